// Command message runs papo's message service: rooms, membership, DMs and
// the gap-free per-room event log (see README.md and docs/message.md).
package main

import "github.com/papochat/papo/platform/service"

func main() { service.Main("message", run) }
