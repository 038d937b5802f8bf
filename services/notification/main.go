// Command notification runs papo's notification service: device
// registrations, per-room notification modes, and the push decisions made
// from room events (see README.md and docs/notifications.md).
package main

import "github.com/papochat/papo/platform/service"

func main() { service.Main("notification", run) }
