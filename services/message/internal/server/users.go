package server

import (
	"context"
	"net/http"
	"net/url"
)

// Users tells whether a user exists. Check returns nil for a user that
// exists, an apierror NotFound (user_not_found) for one that does not, and
// another error when it cannot tell.
type Users interface {
	Check(ctx context.Context, userID string) error
}

// Invoker calls a method on another app-id; *invoke.Client implements it.
type Invoker interface {
	Do(ctx context.Context, appID, method, path string, header http.Header, in, out any) error
}

// AuthUsers is Users over the auth service's GET /internal/v1/users/{id},
// through Dapr service invocation.
type AuthUsers struct {
	Invoke Invoker
	AppID  string
}

// Check implements Users.
func (u AuthUsers) Check(ctx context.Context, userID string) error {
	return u.Invoke.Do(ctx, u.AppID, http.MethodGet, "/internal/v1/users/"+url.PathEscape(userID), nil, nil, nil)
}
