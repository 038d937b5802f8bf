// Package e2e holds papo's end-to-end tests: each starts a real stack
// (daprd sidecars, a broker, every service, two ws replicas) through the
// launcher package, the same code `make run` uses, and drives it as a
// client would, over HTTP and real WebSockets.
package e2e
