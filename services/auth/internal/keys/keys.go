// Package keys is the auth service's directory of end-to-end encryption
// keys (docs/e2ee.md): per user, the public identity key and up to
// e2ee.MaxDevices device keys it signed. It checks every signature on
// upload, but holds no private key and cannot sign: clients verify the
// directory again, so the server cannot slip a device in.
//
// Keys: e2ee/<user id> holds the user's api.KeyDirectory as JSON,
// changed with an ETag-guarded read-modify-write.
package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore"
)

// Directory keeps the key directories in a store.
type Directory struct {
	store statestore.Store
	now   func() time.Time
}

// New returns a Directory over store; now is the clock (nil: time.Now).
func New(store statestore.Store, now func() time.Time) *Directory {
	if now == nil {
		now = time.Now
	}
	return &Directory{store: store, now: now}
}

func key(userID string) string { return "e2ee/" + userID }

// Get returns userID's directory: no identity key and no devices when the
// user has published none.
func (d *Directory) Get(ctx context.Context, userID string) (api.KeyDirectory, error) {
	dir := api.KeyDirectory{UserID: userID}
	it, err := d.store.Get(ctx, key(userID))
	switch {
	case errors.Is(err, statestore.ErrNotFound):
	case err != nil:
		return api.KeyDirectory{}, fmt.Errorf("read key directory of %s: %w", userID, err)
	default:
		if err := json.Unmarshal(it.Value, &dir); err != nil {
			return api.KeyDirectory{}, fmt.Errorf("decode key directory of %s: %w", userID, err)
		}
	}
	if dir.Devices == nil {
		dir.Devices = []api.DeviceKey{}
	}
	return dir, nil
}

// Errors a client may see.
var (
	errIdentityMismatch = apierror.New(apierror.Conflict, "identity_mismatch",
		"the directory has another identity key; sign with it, or set replace_identity to replace it and drop its devices")
	errTooManyDevices = apierror.New(apierror.Conflict, "too_many_devices",
		"a user may publish at most %d device keys; remove one first", e2ee.MaxDevices)
	errDeviceNotFound = apierror.New(apierror.NotFound, "device_not_found", "no such device key")
)

// Put publishes (or replaces) the key of userID's device deviceID.
func (d *Directory) Put(ctx context.Context, userID, deviceID string, req api.PutDeviceKeyRequest) (api.KeyDirectory, error) {
	dev := api.DeviceKey{DeviceID: deviceID, PublicKey: req.PublicKey, Signature: req.Signature, CreatedAt: d.now().UTC()}
	if err := e2ee.VerifyDevice(userID, req.IdentityKey, dev); err != nil {
		return api.KeyDirectory{}, err
	}
	var out api.KeyDirectory
	var refusal error
	err := statestore.Update(ctx, d.store, key(userID), 0, func(v *api.KeyDirectory, found bool) bool {
		refusal = nil
		v.UserID = userID
		switch {
		case v.IdentityKey == "" || v.IdentityKey == req.IdentityKey:
		case req.ReplaceIdentity:
			// A new identity vouches for none of the old devices.
			v.Devices = nil
		default:
			refusal = errIdentityMismatch
			return false
		}
		v.IdentityKey = req.IdentityKey
		i := slices.IndexFunc(v.Devices, func(x api.DeviceKey) bool { return x.DeviceID == deviceID })
		switch {
		case i >= 0 && v.Devices[i].PublicKey == dev.PublicKey && v.Devices[i].Signature == dev.Signature:
			out = *v // a repeat: nothing changes, not even the time
			return false
		case i >= 0:
			v.Devices[i] = dev
		case len(v.Devices) >= e2ee.MaxDevices:
			refusal = errTooManyDevices
			return false
		default:
			v.Devices = append(v.Devices, dev)
		}
		v.UpdatedAt = dev.CreatedAt
		out = *v
		return true
	})
	if err != nil {
		return api.KeyDirectory{}, fmt.Errorf("put device key of %s: %w", userID, err)
	}
	if refusal != nil {
		return api.KeyDirectory{}, refusal
	}
	return out, nil
}

// Remove deletes the key of userID's device deviceID: messages sent after
// it are not wrapped for that device.
func (d *Directory) Remove(ctx context.Context, userID, deviceID string) error {
	if err := e2ee.CheckDeviceID(deviceID); err != nil {
		return err
	}
	var missing bool
	err := statestore.Update(ctx, d.store, key(userID), 0, func(v *api.KeyDirectory, found bool) bool {
		n := len(v.Devices)
		v.Devices = slices.DeleteFunc(v.Devices, func(x api.DeviceKey) bool { return x.DeviceID == deviceID })
		missing = len(v.Devices) == n
		if missing {
			return false
		}
		v.UpdatedAt = d.now().UTC()
		return true
	})
	if err != nil {
		return fmt.Errorf("remove device key of %s: %w", userID, err)
	}
	if missing {
		return errDeviceNotFound
	}
	return nil
}
