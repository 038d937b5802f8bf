package authn_test

import (
	"context"
	"testing"
	"time"

	"github.com/papochat/papo/platform/authn/authntest"
)

func TestVerifyAcceptsAValidToken(t *testing.T) {
	iss := authntest.New()
	c, err := iss.Verifier().Verify(context.Background(), iss.Token("u1", "s1", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "u1" || c.SessionID != "s1" {
		t.Fatalf("got %+v", c)
	}
}

func TestVerifyRefusesAnExpiredToken(t *testing.T) {
	iss := authntest.New()
	if _, err := iss.Verifier().Verify(context.Background(), iss.Token("u1", "s1", -time.Minute)); err == nil {
		t.Fatal("expired token accepted")
	}
}

func TestVerifyRefusesAnotherIssuersKey(t *testing.T) {
	a, b := authntest.New(), authntest.New()
	if _, err := a.Verifier().Verify(context.Background(), b.Token("u1", "s1", time.Minute)); err == nil {
		t.Fatal("token signed by another key accepted")
	}
}
