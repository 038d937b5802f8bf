package service_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/settings"
)

func TestExecReturnsTheExitCodeAndNamesTheFailure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	env := settings.Env(map[string]string{"NAME": "auth"})
	ok := func(ctx context.Context, getenv settings.Getenv, w io.Writer) error {
		<-ctx.Done() // runs until told to stop
		name, _ := getenv("NAME")
		_, err := io.WriteString(w, name+" stopped")
		return err
	}
	if code := service.Exec(ctx, "auth", ok, env, &stdout, &stderr); code != 0 || stdout.String() != "auth stopped" || stderr.Len() != 0 {
		t.Fatalf("clean stop: code %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	failing := func(context.Context, settings.Getenv, io.Writer) error {
		return errors.New("config: APP_PORT is not a port")
	}
	if code := service.Exec(ctx, "auth", failing, env, &stdout, &stderr); code != 1 || stderr.String() != "auth: config: APP_PORT is not a port\n" {
		t.Fatalf("failure: code %d, stderr %q", code, stderr.String())
	}
}
