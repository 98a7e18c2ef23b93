/* Placeholder so the server layer library has a source until its modules
 * land (removed by them). */
const char *pno_serve_layer = "pno serve";
