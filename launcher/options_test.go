package launcher

import (
	"runtime"
	"slices"
	"strconv"
	"testing"
)

func TestGoMaxProcsIsOnePerFourCores(t *testing.T) {
	for cpus, want := range map[int]int{1: 1, 2: 1, 3: 1, 4: 1, 8: 2, 16: 4, 64: 16} {
		if got := DefaultGoMaxProcs(cpus); got != want {
			t.Errorf("DefaultGoMaxProcs(%d) = %d, want %d", cpus, got, want)
		}
	}
}

func TestGoMaxProcsReachesEveryProcessUnlessTheEnvironmentSetsIt(t *testing.T) {
	root := t.TempDir()
	t.Setenv("GOMAXPROCS", "")
	o := Options{Root: root}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	want := []string{"GOMAXPROCS=" + strconv.Itoa(DefaultGoMaxProcs(runtime.NumCPU()))}
	if got := o.goMaxProcsEnv(); !slices.Equal(got, want) {
		t.Errorf("default: %q, want %q", got, want)
	}

	o = Options{Root: root, GoMaxProcs: 3}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if got := o.goMaxProcsEnv(); !slices.Equal(got, []string{"GOMAXPROCS=3"}) {
		t.Errorf("GoMaxProcs 3: %q", got)
	}

	o = Options{Root: root, GoMaxProcs: -1}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if got := o.goMaxProcsEnv(); got != nil {
		t.Errorf("GoMaxProcs -1 sets %q; want Go's default", got)
	}

	// The launcher's own GOMAXPROCS is inherited by every process
	// (procs.Start passes the environment on), so the stack sets none.
	t.Setenv("GOMAXPROCS", "2")
	o = Options{Root: root}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if got := o.goMaxProcsEnv(); got != nil {
		t.Errorf("with GOMAXPROCS=2 in the environment the stack sets %q; want none", got)
	}
}
