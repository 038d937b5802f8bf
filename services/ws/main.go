// Command ws is papo's realtime edge: it holds the clients' WebSockets,
// publishes what they send, and fans room events out to them.
package main

import "github.com/papochat/papo/platform/service"

func main() { service.Main("ws", run) }
