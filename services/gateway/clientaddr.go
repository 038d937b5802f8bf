package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Forwarding headers the gateway can take the client address from.
const (
	headerXForwardedFor = "X-Forwarded-For"
	headerForwarded     = "Forwarded"
)

// proxyTrust decides which address a request came from. Only a peer
// inside one of the trusted prefixes (a load balancer, an ingress) is
// believed about who it forwards for; from anyone else a forwarding
// header is ignored, so a client cannot choose the address that rate
// limits and login throttling count it under.
type proxyTrust struct {
	trusted []netip.Prefix
	// header is the one forwarding header the trusted proxies set:
	// X-Forwarded-For or Forwarded. The other one is ignored, since a
	// proxy that appends to one usually passes the other on untouched.
	header string
}

// parseProxyTrust reads GATEWAY_TRUSTED_PROXIES (CIDRs or single
// addresses) and GATEWAY_FORWARDED_HEADER (X-Forwarded-For when empty).
func parseProxyTrust(cidrs []string, header string) (proxyTrust, error) {
	if header == "" {
		header = headerXForwardedFor
	}
	p := proxyTrust{header: http.CanonicalHeaderKey(header)}
	if p.header != headerXForwardedFor && p.header != headerForwarded {
		return p, fmt.Errorf("GATEWAY_FORWARDED_HEADER %q: want %s or %s", header, headerXForwardedFor, headerForwarded)
	}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return p, fmt.Errorf("GATEWAY_TRUSTED_PROXIES: %q is not an address or a CIDR", c)
			}
			c = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String()
		}
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return p, fmt.Errorf("GATEWAY_TRUSTED_PROXIES: %q is not an address or a CIDR", c)
		}
		p.trusted = append(p.trusted, pfx.Masked())
	}
	return p, nil
}

func (p proxyTrust) trusts(a netip.Addr) bool {
	for _, pfx := range p.trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the request's client address: the connection's peer,
// unless the peer is a trusted proxy; then the forwarding header is read
// from the right, skipping trusted proxies, and the first address that
// is not one is the client. An entry that is not an address (an
// obfuscated identifier, "unknown", garbage) ends the walk at the last
// trusted hop, which then stands for the client.
func (p proxyTrust) clientAddr(r *http.Request) netip.Addr {
	addr := parseHostAddr(r.RemoteAddr)
	if !addr.IsValid() || !p.trusts(addr) {
		return addr
	}
	chain := p.chain(r)
	for i := len(chain) - 1; i >= 0; i-- {
		a := parseHostAddr(chain[i])
		if !a.IsValid() {
			break
		}
		addr = a
		if !p.trusts(a) {
			break
		}
	}
	return addr
}

// chain lists the forwarding header's addresses, oldest hop first.
func (p proxyTrust) chain(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values(p.header) {
		for _, elem := range strings.Split(v, ",") {
			elem = strings.TrimSpace(elem)
			if p.header == headerXForwardedFor {
				out = append(out, elem)
				continue
			}
			// Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"
			node := ""
			for _, pair := range strings.Split(elem, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(k, "for") {
					node = strings.Trim(v, `"`)
				}
			}
			out = append(out, node)
		}
	}
	return out
}

// parseHostAddr reads "192.0.2.1", "192.0.2.1:80", "2001:db8::1" or
// "[2001:db8::1]:80" as an address; anything else is the zero Addr.
func parseHostAddr(s string) netip.Addr {
	s = strings.TrimSpace(s)
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// rateKey is the key per-address rate limits count a client under: its
// IPv4 address, or the /64 of its IPv6 address, which one host usually
// holds whole.
func rateKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

type clientAddrKey struct{}

// withClientAddrs stores each request's client address in its context,
// where the rate limits and the proxies read it.
func withClientAddrs(p proxyTrust) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := context.WithValue(r.Context(), clientAddrKey{}, p.clientAddr(r))
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// clientAddrOf returns the client address withClientAddrs stored.
func clientAddrOf(ctx context.Context) netip.Addr {
	a, _ := ctx.Value(clientAddrKey{}).(netip.Addr)
	return a
}
