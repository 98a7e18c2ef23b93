/* Quality gates: the config's validation, every gate's verdict on both
 * sides of its bound, the served (calibrated) figures preferred, and the
 * gates that cannot be judged failing with their reason. */
#include "testutil.h"

#include "gate.h"

#include <string.h>

static const char *EV =
	"{\"schema\":\"pno-eval-summary/1\",\"data_blake2b\":\"aa\","
	"\"split\":\"test\",\"samples\":100,\"rel_l2\":0.02,\"crps\":0.010,"
	"\"coverage90\":0.70,\"calib_error\":0.08,"
	"\"calibrated\":{\"crps\":0.011,\"coverage90\":0.91,"
	"\"calib_error\":0.03}}";

static struct gate_config parse_ok(const char *text)
{
	struct gate_config g;
	assert_status(gate_config_parse(&g, text, "t"), PNO_STATUS_OK);
	return g;
}

static void test_config(void **state)
{
	(void)state;
	struct gate_config g = parse_ok("{\"max_rel_l2\": 0.05, "
					"\"coverage90\": [0.85, 0.95], "
					"\"max_calib_error\": 0.1, "
					"\"max_crps_regression\": 0.05}");
	assert_true(g.has_rel_l2 && g.has_cov90 && g.has_calib && g.has_crps);
	assert_true(g.max_rel_l2 == 0.05 && g.cov90_lo == 0.85 &&
		    g.cov90_hi == 0.95 && g.max_crps_regression == 0.05);
	const struct {
		const char *text, *msg;
	} bad[] = {
		{"{\"max_rel_l2\": -1}", "\"max_rel_l2\" must be a number >= 0"},
		{"{\"max_rel_l2\": \"x\"}", "max_rel_l2"},
		{"{\"coverage90\": [0.9]}", "coverage90"},
		{"{\"coverage90\": [0.95, 0.85]}", "lo <= hi"},
		{"{\"coverage90\": [0.5, 1.5]}", "coverage90"},
		{"{\"max_calib_error\": 2}", "[0, 1]"},
		{"{\"max_crps_regresion\": 0.1}", "unknown key \"max_crps_regresion\""},
		{"[1, 2]", "expected a JSON object"},
		{"{\"max_rel_l2\": 0.1", "gates t:"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_status(gate_config_parse(&g, bad[i].text, "t"),
			      PNO_STATUS_INVALID);
		assert_err_has(bad[i].msg);
		assert_false(g.has_rel_l2 || g.has_cov90);
	}
	assert_status(gate_config_load(&g, tu_tmp_path("no_such_gates.json")),
		      PNO_STATUS_NOTFOUND);
}

static void test_verdicts(void **state)
{
	(void)state;
	struct gate_verdict v[GATE_MAX_VERDICTS];
	int n;
	/* nothing configured: nothing judged, passes */
	struct gate_config g = parse_ok("{}");
	assert_int_equal(gate_check(&g, EV, NULL, v, &n), 1);
	assert_int_equal(n, 0);
	/* each bound on both sides; the calibrated figures are the served
	 * ones (coverage 0.91, calibration error 0.03) */
	g = parse_ok("{\"max_rel_l2\": 0.02, \"coverage90\": [0.85, 0.95], "
		     "\"max_calib_error\": 0.05}");
	assert_int_equal(gate_check(&g, EV, NULL, v, &n), 1);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "rel_l2");
	assert_non_null(strstr(v[0].detail, "0.02 <= 0.02"));
	assert_non_null(strstr(v[1].detail, "0.9100 in [0.85, 0.95]"));
	g = parse_ok("{\"max_rel_l2\": 0.019}");
	assert_int_equal(gate_check(&g, EV, NULL, v, &n), 0);
	assert_false(v[0].pass);
	assert_non_null(strstr(v[0].detail, "0.02 > 0.019"));
	g = parse_ok("{\"coverage90\": [0.92, 0.95]}");
	assert_int_equal(gate_check(&g, EV, NULL, v, &n), 0);
	assert_non_null(strstr(v[0].detail, "outside"));
	g = parse_ok("{\"max_calib_error\": 0.029}");
	assert_int_equal(gate_check(&g, EV, NULL, v, &n), 0);
	/* a model without a calibration is judged on its own figures */
	const char *raw = "{\"rel_l2\":0.02,\"coverage90\":0.70}";
	g = parse_ok("{\"coverage90\": [0.85, 0.95]}");
	assert_int_equal(gate_check(&g, raw, NULL, v, &n), 0);
	assert_non_null(strstr(v[0].detail, "0.7000"));
}

static void test_regression(void **state)
{
	(void)state;
	struct gate_verdict v[GATE_MAX_VERDICTS];
	int n;
	struct gate_config g = parse_ok("{\"max_crps_regression\": 0.10}");
	/* served CRPS 0.011 against a baseline's 0.0100: 0.011 <= 0.011 */
	const char *base = "{\"data_blake2b\":\"aa\",\"split\":\"test\","
			   "\"samples\":100,\"crps\":0.0100}";
	assert_int_equal(gate_check(&g, EV, base, v, &n), 1);
	assert_int_equal(n, 1);
	const char *better = "{\"data_blake2b\":\"aa\",\"split\":\"test\","
			     "\"samples\":100,\"crps\":0.0099}";
	assert_int_equal(gate_check(&g, EV, better, v, &n), 0);
	assert_non_null(strstr(v[0].detail, "0.011 > 0.01089"));
	/* not comparable: other data, split or sample count */
	const char *other[] = {
		"{\"data_blake2b\":\"bb\",\"split\":\"test\",\"samples\":100,\"crps\":1}",
		"{\"data_blake2b\":\"aa\",\"split\":\"val\",\"samples\":100,\"crps\":1}",
		"{\"data_blake2b\":\"aa\",\"split\":\"test\",\"samples\":50,\"crps\":1}",
	};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(gate_check(&g, EV, other[i], v, &n), 0);
		assert_non_null(strstr(v[0].detail, "not comparable"));
	}
	/* cannot be judged: fails with the reason */
	assert_int_equal(gate_check(&g, EV, NULL, v, &n), 0);
	assert_non_null(strstr(v[0].detail, "no baseline"));
	assert_int_equal(gate_check(&g, EV, "null", v, &n), 0);
	assert_non_null(strstr(v[0].detail, "baseline has no recorded"));
	g = parse_ok("{\"max_rel_l2\": 1, \"max_crps_regression\": 0.1}");
	assert_int_equal(gate_check(&g, NULL, base, v, &n), 0);
	assert_int_equal(n, 2);
	assert_non_null(strstr(v[0].detail, "no evaluation recorded"));
	assert_non_null(strstr(v[1].detail, "no evaluation recorded"));
	assert_int_equal(gate_check(&g, "[1]", base, v, &n), 0);
	assert_non_null(strstr(v[0].detail, "not a JSON object"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_regression),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
