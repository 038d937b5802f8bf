package daprd

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func fakeDaprd(t *testing.T, dir, version string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "daprd")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLocatePrefersAnInstalledCompatibleDaprd: a 1.14.x daprd on PATH is
// used as it is; nothing is built.
func TestLocatePrefersAnInstalledCompatibleDaprd(t *testing.T) {
	want := fakeDaprd(t, t.TempDir(), "1.14.4")
	t.Setenv("PATH", filepath.Dir(want)+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("PAPO_DAPRD", "")
	got, err := Locate(context.Background(), "/nonexistent-root", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Locate = %s, want %s", got, want)
	}
}

// TestLocateSkipsAnIncompatibleDaprd: a daprd of another minor version is
// passed over (here in favour of the HOME-installed Dapr CLI one).
func TestLocateSkipsAnIncompatibleDaprd(t *testing.T) {
	old := fakeDaprd(t, t.TempDir(), "1.13.2")
	home := t.TempDir()
	want := fakeDaprd(t, filepath.Join(home, ".dapr", "bin"), "1.14.0")
	t.Setenv("PATH", filepath.Dir(old))
	t.Setenv("HOME", home)
	t.Setenv("PAPO_DAPRD", "")
	got, err := Locate(context.Background(), "/nonexistent-root", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Locate = %s, want %s (the 1.13 one must be skipped)", got, want)
	}
}

func TestPAPODAPRDMustBeCompatible(t *testing.T) {
	t.Setenv("PAPO_DAPRD", fakeDaprd(t, t.TempDir(), "edge"))
	if _, err := Locate(context.Background(), "/nonexistent-root", os.Stderr); err == nil {
		t.Fatal("an incompatible PAPO_DAPRD was accepted")
	}
}
