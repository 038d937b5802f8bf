package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDaprd writes an executable that answers --version with v.
func fakeDaprd(t *testing.T, v string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "daprd")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+v+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestQuietWhenADaprdNeedsNoBuild(t *testing.T) {
	t.Setenv("PAPO_DAPRD", fakeDaprd(t, "1.14.0"))
	var out, errs bytes.Buffer
	if err := run(context.Background(), []string{"-root", repoRoot(t), "-quiet"}, &out, &errs); err != nil {
		t.Fatalf("run: %v (%s)", err, errs.String())
	}
	if out.Len() != 0 {
		t.Errorf("-quiet with an installed daprd printed %q, want nothing (a warm make run stays quiet)", out.String())
	}

	out.Reset()
	if err := run(context.Background(), []string{"-root", repoRoot(t)}, &out, &errs); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), os.Getenv("PAPO_DAPRD")) {
		t.Errorf("without -quiet it printed %q, want the daprd's path", out.String())
	}
}

func TestRefusesAWrongDaprdOrRoot(t *testing.T) {
	t.Setenv("PAPO_DAPRD", fakeDaprd(t, "1.13.2"))
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-root", repoRoot(t), "-quiet"}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), "want 1.14.0") {
		t.Errorf("a PAPO_DAPRD of version 1.13.2 gave %v, want a version error", err)
	}
	err = run(context.Background(), []string{"-root", t.TempDir()}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), "not the papo repository") {
		t.Errorf("a root without tools/daprd gave %v, want an error naming it", err)
	}
	if err := run(context.Background(), []string{"extra"}, &out, &errs); err == nil {
		t.Error("an unexpected argument was accepted")
	}
}
