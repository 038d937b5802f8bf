package password

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

func newHasher(t *testing.T) *Hasher {
	t.Helper()
	h, err := NewHasher(Default, 2)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashVerifiesOnlyTheRightPassword(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t)
	enc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse"); err != nil || !ok {
		t.Fatalf("right password: ok=%v err=%v", ok, err)
	}
	if ok, _ := h.Verify(ctx, enc, "correct horsf"); ok {
		t.Fatal("wrong password verified")
	}
}

func TestHashIsArgon2idAtLeastTheOWASPMinimum(t *testing.T) {
	h := newHasher(t)
	enc, err := h.Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$") {
		t.Fatalf("got %q, want a PHC argon2id string", enc)
	}
	p, salt, key, err := decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if p.MemoryKiB < 19*1024 || p.Time < 2 || p.Threads != 1 {
		t.Fatalf("params %+v are below m=19MiB,t=2,p=1", p)
	}
	if len(salt) < 16 || len(key) < 32 {
		t.Fatalf("salt %d bytes, key %d bytes", len(salt), len(key))
	}
}

func TestHashUsesAFreshSaltEachTime(t *testing.T) {
	h := newHasher(t)
	a, _ := h.Hash(context.Background(), "same")
	b, _ := h.Hash(context.Background(), "same")
	if a == b {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
}

func TestVerifyRefusesMalformedAndAbusiveHashes(t *testing.T) {
	h := newHasher(t)
	for name, enc := range map[string]string{
		"empty":          "",
		"bcrypt":         "$2a$10$abcdefghijklmnopqrstuu",
		"argon2i":        "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
		"huge memory":    "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
		"huge time":      "$argon2id$v=19$m=19456,t=999,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
		"short salt":     "$argon2id$v=19$m=19456,t=2,p=1$c2Fs$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
		"wrong version":  "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
		"missing fields": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0",
	} {
		t.Run(name, func(t *testing.T) {
			if ok, err := h.Verify(context.Background(), enc, "pw"); ok || err == nil {
				t.Fatalf("got ok=%v err=%v, want a refusal", ok, err)
			}
		})
	}
}

// TestVerifyDummyCostsLikeARealVerify checks the unknown-user path does the
// same argon2id work: it must take at least half as long as a real one.
// TestVerifyDummyCostsLikeARealVerify: a login for an unknown user must
// cost what a wrong password for a real one costs, or the difference
// tells which usernames exist. The cost of argon2id is its parameters:
// the dummy hash must carry the hasher's own, and a dummy verify must do
// the same work — measured as the bytes it allocates (argon2id allocates
// its whole memory parameter), which unlike the time does not change
// with what else the machine runs.
func TestVerifyDummyCostsLikeARealVerify(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t)
	p, _, _, err := decode(h.dummy)
	if err != nil {
		t.Fatal(err)
	}
	if p != h.p {
		t.Fatalf("dummy hash parameters %+v, the hasher's %+v", p, h.p)
	}
	enc, _ := h.Hash(ctx, "pw")
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	real := allocated(func() { _, _ = h.Verify(ctx, enc, "nope") })
	dummy := allocated(func() { h.VerifyDummy(ctx, "nope") })
	if real < uint64(h.p.MemoryKiB)*1024 {
		t.Fatalf("a real verify allocated %d bytes, less than the memory parameter %d KiB", real, h.p.MemoryKiB)
	}
	if dummy < real*9/10 {
		t.Fatalf("dummy verify allocated %d bytes, a real one %d: unknown users are cheaper", dummy, real)
	}
}
