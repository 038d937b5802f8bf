// Command gateway is papo's single public entry: the web client, the REST
// API routed to the owning services through Dapr service invocation, and
// the /ws proxy over the ws replicas.
package main

import "github.com/papochat/papo/platform/service"

func main() { service.Main("gateway", run) }
