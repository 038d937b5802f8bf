package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"

	"github.com/papochat/papo/services/auth/internal/account"
	"github.com/papochat/papo/services/auth/internal/keys"
)

// The end-to-end encryption key directory (docs/e2ee.md): anyone signed
// in reads a user's directory; only the user changes it.

func handleGetKeys(accounts *account.Accounts, dir *keys.Directory) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := chi.URLParam(r, "id")
		if _, err := accounts.Get(r.Context(), id); err != nil {
			return err
		}
		d, err := dir.Get(r.Context(), id)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		httpapi.Encode(w, http.StatusOK, d)
		return nil
	}
}

// ownKeys returns the caller's user id when it is the route's {id}.
func ownKeys(r *http.Request) (string, error) {
	c, _ := authn.FromContext(r.Context())
	if chi.URLParam(r, "id") != c.UserID {
		return "", apierror.New(apierror.Forbidden, "not_your_keys", "only a user changes their own key directory")
	}
	return c.UserID, nil
}

func handlePutDeviceKey(dir *keys.Directory) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		user, err := ownKeys(r)
		if err != nil {
			return err
		}
		var req api.PutDeviceKeyRequest
		if err := httpapi.Decode(w, r, maxBody, &req); err != nil {
			return err
		}
		d, err := dir.Put(r.Context(), user, chi.URLParam(r, "device"), req)
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, d)
		return nil
	}
}

func handleDeleteDeviceKey(dir *keys.Directory) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		user, err := ownKeys(r)
		if err != nil {
			return err
		}
		if err := dir.Remove(r.Context(), user, chi.URLParam(r, "device")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
