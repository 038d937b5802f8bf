// Command presence keeps who is online: ws replicas report connections and
// heartbeat their live sets, presence stores them with TTLs in the
// presencestore state store, answers GET /api/v1/presence and announces
// online/offline transitions on the fan-out topic.
package main

import "github.com/papochat/papo/platform/service"

func main() { service.Main("presence", run) }
