package mode_test

import (
	"context"
	"testing"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/notification/internal/mode"
)

func TestModes(t *testing.T) {
	ctx := context.Background()
	s := mode.NewStore(memstore.New())
	if err := s.Set(ctx, "bob", "r1", mode.None); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "carol", "r1", mode.Mentions); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "bob", "r2", mode.Mentions); err != nil {
		t.Fatal(err)
	}
	got, err := s.ForUsers(ctx, "r1", []string{"bob", "carol", "dave"})
	if err != nil {
		t.Fatal(err)
	}
	if got["bob"] != mode.None || got["carol"] != mode.Mentions || got["dave"] != mode.All {
		t.Fatalf("modes = %v", got)
	}
	if err := s.Set(ctx, "bob", "r1", mode.All); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Get(ctx, "bob", "r1"); m != mode.All {
		t.Fatalf("bob's mode after reset = %q", m)
	}
	if m, _ := s.Get(ctx, "bob", "r2"); m != mode.Mentions {
		t.Fatalf("bob's mode in r2 = %q", m)
	}
	if err := s.Set(ctx, "bob", "r1", "quiet"); apierror.CodeOf(err) != "invalid_mode" {
		t.Fatalf("err = %v, want invalid_mode", err)
	}
}

func TestForPairsReadsModesOfSeveralRooms(t *testing.T) {
	ctx := context.Background()
	s := mode.NewStore(memstore.New())
	if err := s.Set(ctx, "bob", "r1", mode.None); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "bob", "r2", mode.Mentions); err != nil {
		t.Fatal(err)
	}
	got, err := s.ForPairs(ctx, []mode.Pair{{Room: "r1", User: "bob"}, {Room: "r2", User: "bob"}, {Room: "r3", User: "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[mode.Pair]string{{Room: "r1", User: "bob"}: mode.None, {Room: "r2", User: "bob"}: mode.Mentions, {Room: "r3", User: "bob"}: mode.All}
	for p, m := range want {
		if got[p] != m {
			t.Errorf("mode of %v = %q, want %q", p, got[p], m)
		}
	}
}
