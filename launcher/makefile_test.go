package launcher

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// make run builds the services together with the launcher, into the bin/
// it then passes to the launcher (whose own build of them finds them up
// to date): its list must be the launcher's, or a service would be built
// by the launcher alone, after the daprd build has the cores.
func TestMakefileBuildsEveryService(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^SERVICES = (.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the Makefile has no SERVICES = line")
	}
	got := strings.Fields(string(m[1]))
	want := slices.Clone(Services)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Makefile SERVICES = %v, launcher.Services = %v", got, want)
	}
	if !strings.Contains(string(b), "$(SERVICES:%=./services/%)") || !strings.Contains(string(b), `-bin "$(CURDIR)/bin"`) {
		t.Error("make run no longer builds $(SERVICES) into bin/ and passes -bin to the launcher")
	}
}
