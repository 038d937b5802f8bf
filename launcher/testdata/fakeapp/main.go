// Command fakeapp stands in for a papo app in the launcher's supervision
// tests: it answers /readyz on APP_PORT until it is killed.
package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("APP_PORT"), nil); err != nil {
		os.Exit(1)
	}
}
