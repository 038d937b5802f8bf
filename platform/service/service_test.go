package service_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/papochat/papo/platform/service"
)

func TestExecReturnsTheExitCodeAndNamesTheFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	ok := func(ctx context.Context, w io.Writer) error {
		<-ctx.Done() // runs until told to stop
		_, err := io.WriteString(w, "stopped")
		return err
	}
	if code := service.Exec(ctx, "auth", ok, &stdout, &stderr); code != 0 || stdout.String() != "stopped" || stderr.Len() != 0 {
		t.Fatalf("clean stop: code %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	failing := func(context.Context, io.Writer) error { return errors.New("config: APP_PORT is not a port") }
	if code := service.Exec(ctx, "auth", failing, &stdout, &stderr); code != 1 || stderr.String() != "auth: config: APP_PORT is not a port\n" {
		t.Fatalf("failure: code %d, stderr %q", code, stderr.String())
	}
}
