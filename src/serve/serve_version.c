/* The server layer's build marker (the library has pno_version()). */
const char *pno_serve_layer = "pno serve";
