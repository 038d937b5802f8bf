package memstore_test

import (
	"testing"

	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/platform/statestore/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, memstore.New(), storetest.Options{})
}
