package authn

import (
	"context"
	"crypto"
)

// StaticKeys is a KeySource over a fixed set of keys, for tests and for
// deployments that pin keys in configuration.
type StaticKeys map[string]crypto.PublicKey

// Key implements KeySource.
func (s StaticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}
