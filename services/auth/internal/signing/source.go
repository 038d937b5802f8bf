package signing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// SecretGetter reads one secret from a Dapr secret store; the go-sdk
// client implements it.
type SecretGetter interface {
	GetSecret(ctx context.Context, storeName, key string, meta map[string]string) (map[string]string, error)
}

// Source loads the signing keys from the secret Name of the Dapr secret
// store Store. The secret's value is the JSON document Encode writes. A
// Kubernetes secret may hold it under the data key Name or as its only
// data key.
//
// Local development: Dapr's secretstores.local.file reads its file once,
// at start, and cannot be written through Dapr. With DevGenerate set, a
// missing key is generated once and written into DevKeyFile, the same
// JSON file the component reads (the launcher points both at
// <data dir>/secrets.json), so the next start finds it through Dapr.
type Source struct {
	Secrets     SecretGetter
	Store       string
	Name        string
	DevGenerate bool
	DevKeyFile  string
	Now         func() time.Time
	Log         *slog.Logger
}

// Load returns the keys, generating and persisting one in local
// development when there is none.
func (s *Source) Load(ctx context.Context) ([]Key, error) {
	keys, err := s.fromSecretStore(ctx)
	if err == nil && len(keys) > 0 {
		return keys, nil
	}
	if !s.DevGenerate {
		if err == nil {
			err = errors.New("it holds no key")
		}
		return nil, fmt.Errorf("signing keys from secret %q in %s: %w", s.Name, s.Store, err)
	}
	// The sidecar's view of the file is from its start; the file itself
	// may already hold a key generated since.
	keys, ferr := s.fromDevFile()
	if ferr != nil {
		return nil, ferr
	}
	if len(keys) > 0 {
		return keys, nil
	}
	k, gerr := GenerateKey(s.now())
	if gerr != nil {
		return nil, gerr
	}
	if err := s.persist([]Key{k}); err != nil {
		return nil, err
	}
	s.Log.Warn("generated a development signing key", "kid", k.ID, "file", s.DevKeyFile, "secret_store_err", err)
	return []Key{k}, nil
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) fromSecretStore(ctx context.Context) ([]Key, error) {
	data, err := s.Secrets.GetSecret(ctx, s.Store, s.Name, nil)
	if err != nil {
		return nil, err
	}
	doc, ok := data[s.Name]
	if !ok && len(data) == 1 {
		for _, v := range data {
			doc = v
		}
		ok = true
	}
	if !ok || doc == "" {
		return nil, nil
	}
	return Decode([]byte(doc))
}

// fromDevFile reads the secret straight from the local secrets file.
func (s *Source) fromDevFile() ([]Key, error) {
	if s.DevKeyFile == "" {
		return nil, errors.New("AUTH_DEV_GENERATE_KEYS is set but AUTH_DEV_KEY_FILE is not")
	}
	all, err := s.readDevFile()
	if err != nil {
		return nil, err
	}
	v, ok := all[s.Name].(string)
	if !ok || v == "" {
		return nil, nil
	}
	return Decode([]byte(v))
}

func (s *Source) readDevFile() (map[string]any, error) {
	all := map[string]any{}
	b, err := os.ReadFile(s.DevKeyFile)
	if errors.Is(err, os.ErrNotExist) {
		return all, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.DevKeyFile, err)
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &all); err != nil {
			return nil, fmt.Errorf("parse %s: %w", s.DevKeyFile, err)
		}
	}
	return all, nil
}

// persist writes keys into the dev secrets file under Name, keeping the
// file's other secrets, atomically (write then rename) and readable by
// the owner only. The value is the JSON document as a string, which the
// local file store hands back as one secret.
func (s *Source) persist(keys []Key) error {
	all, err := s.readDevFile()
	if err != nil {
		return err
	}
	doc, err := Encode(keys)
	if err != nil {
		return err
	}
	all[s.Name] = string(doc)
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.DevKeyFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".secrets-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.DevKeyFile); err != nil {
		return fmt.Errorf("write %s: %w", s.DevKeyFile, err)
	}
	return nil
}

// Keep loads keys into ring until it succeeds (retrying every second),
// then reloads them every interval until ctx is done, so a key added to
// the secret (rotation) is picked up without a restart. A failed reload
// keeps the keys already loaded.
func (s *Source) Keep(ctx context.Context, ring *Keyring, interval time.Duration) {
	wait := time.Second
	for {
		keys, err := s.Load(ctx)
		switch {
		case err != nil:
			s.Log.Warn("cannot load signing keys", "err", err)
		case len(keys) > 0:
			if s.DevGenerate {
				keys = union(ring.Keys(), keys)
			}
			ring.Set(keys)
			wait = interval
		}
		if _, ok := ring.Current(); !ok {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// union keeps every key of a and b once. In local development the
// sidecar's stale view of the file must not drop a key generated since.
func union(a, b []Key) []Key {
	seen := map[string]bool{}
	var out []Key
	for _, k := range append(append([]Key(nil), a...), b...) {
		if !seen[k.ID] {
			seen[k.ID] = true
			out = append(out, k)
		}
	}
	return out
}
