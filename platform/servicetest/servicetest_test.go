package servicetest

import (
	"net"
	"testing"
)

func TestFreePortsAreDistinctAndFree(t *testing.T) {
	ports := FreePorts(t, 64)
	seen := map[string]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %s handed out twice in %v", p, ports)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("port %s is not free after FreePorts returned: %v", p, err)
		}
		ln.Close()
	}
}
