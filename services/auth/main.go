// Command auth runs papo's auth service: accounts, password login,
// sessions with rotating refresh tokens, and the Ed25519 keys that sign
// access tokens (published as a JWKS). See docs/auth.md.
package main

import "github.com/papochat/papo/platform/service"

func main() { service.Main("auth", run) }
