package client

import (
	"context"
	"crypto/ecdh"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
)

// OpenEncryptedDM returns the end-to-end encrypted DM room with userID
// (docs/e2ee.md): a room of its own, apart from the plaintext DM.
func (c *Client) OpenEncryptedDM(ctx context.Context, userID string) (api.Room, error) {
	var out api.RoomResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/dms", api.DMRequest{UserID: userID, Encrypted: true}, &out)
	return out.Room, err
}

// KeyDirectory returns userID's end-to-end encryption key directory, as
// the server has it (Crypto verifies it).
func (c *Client) KeyDirectory(ctx context.Context, userID string) (api.KeyDirectory, error) {
	var out api.KeyDirectory
	err := c.Do(ctx, http.MethodGet, "/api/v1/users/"+url.PathEscape(userID)+"/keys", nil, &out)
	return out, err
}

// PutDeviceKey publishes a device key in the caller's directory.
func (c *Client) PutDeviceKey(ctx context.Context, userID, deviceID string, req api.PutDeviceKeyRequest) (api.KeyDirectory, error) {
	var out api.KeyDirectory
	err := c.Do(ctx, http.MethodPut, "/api/v1/users/"+url.PathEscape(userID)+"/keys/devices/"+url.PathEscape(deviceID), req, &out)
	return out, err
}

// DeleteDeviceKey removes a device key from the caller's directory.
func (c *Client) DeleteDeviceKey(ctx context.Context, userID, deviceID string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(userID)+"/keys/devices/"+url.PathEscape(deviceID), nil, nil)
}

// SendEncrypted submits an envelope over REST, as Send does a text.
func (c *Client) SendEncrypted(ctx context.Context, roomID, clientID string, env *api.Envelope) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/rooms/"+url.PathEscape(roomID)+"/messages",
		api.SendRequest{E2EE: env, ClientID: clientID}, nil)
}

// Notice kinds: what changed in a peer's keys since the device last saw
// them.
const (
	// NoticeIdentityChanged: the peer's identity key is not the pinned
	// one, so the safety number changed (a reset, or someone in between).
	NoticeIdentityChanged = "identity_changed"
	NoticeDeviceAdded     = "device_added"
	NoticeDeviceRemoved   = "device_removed"
)

// Notice is a change in a user's keys, to show in the conversation.
type Notice struct {
	UserID   string
	Kind     string
	DeviceID string
}

// Crypto is one device's end-to-end encryption: its keys, the identity
// keys it pinned for each user on first sight (trust on first use), and
// the device keys it has verified, kept after their removal so history
// sent from them stays readable.
type Crypto struct {
	c        *Client
	userID   string
	identity *e2ee.Identity
	device   *e2ee.Device

	mu      sync.Mutex
	pinned  map[string]string                     // user → identity key
	devices map[string]map[string]*ecdh.PublicKey // user → device → key, ever verified
	current map[string][]e2ee.Recipient           // user → devices as last fetched
	seen    map[string]map[string]bool            // user → devices as last fetched, for notices
	notices []Notice
}

// NewCrypto returns the encryption of device, a device of userID that
// holds the user's identity key, calling the API through c.
func NewCrypto(c *Client, userID string, identity *e2ee.Identity, device *e2ee.Device) *Crypto {
	return &Crypto{c: c, userID: userID, identity: identity, device: device,
		pinned: map[string]string{}, devices: map[string]map[string]*ecdh.PublicKey{},
		current: map[string][]e2ee.Recipient{}, seen: map[string]map[string]bool{}}
}

// Device returns the device's keys.
func (k *Crypto) Device() *e2ee.Device { return k.device }

// Publish signs the device's key with the identity key and publishes it;
// replace replaces a different identity key in the directory (and drops
// the devices it signed).
func (k *Crypto) Publish(ctx context.Context, replace bool) error {
	sig, err := k.identity.SignDevice(k.userID, k.device.ID, k.device.Public())
	if err != nil {
		return err
	}
	_, err = k.c.PutDeviceKey(ctx, k.userID, k.device.ID, api.PutDeviceKeyRequest{
		IdentityKey: k.identity.Public(), PublicKey: k.device.Public(), Signature: sig, ReplaceIdentity: replace})
	if err != nil {
		return fmt.Errorf("publish device key: %w", err)
	}
	return nil
}

// Refresh fetches userID's directory, verifies it, and records what
// changed since the last fetch as notices. A new identity key is pinned
// (and noticed): the user decides, by comparing safety numbers, whether
// to trust it.
func (k *Crypto) Refresh(ctx context.Context, userID string) error {
	dir, err := k.c.KeyDirectory(ctx, userID)
	if err != nil {
		return fmt.Errorf("keys of %s: %w", userID, err)
	}
	if dir.UserID != userID {
		return fmt.Errorf("keys of %s: the server answered the directory of %q", userID, dir.UserID)
	}
	good, _ := e2ee.VerifyDirectory(dir)
	k.mu.Lock()
	defer k.mu.Unlock()
	pinned, known := k.pinned[userID]
	if known && pinned != dir.IdentityKey && dir.IdentityKey != "" {
		k.notices = append(k.notices, Notice{UserID: userID, Kind: NoticeIdentityChanged})
	}
	if dir.IdentityKey != "" {
		k.pinned[userID] = dir.IdentityKey
	}
	var rs []e2ee.Recipient
	now := map[string]bool{}
	if k.devices[userID] == nil {
		k.devices[userID] = map[string]*ecdh.PublicKey{}
	}
	for _, d := range good {
		r, err := e2ee.RecipientOf(userID, d)
		if err != nil {
			continue
		}
		rs = append(rs, r)
		now[d.DeviceID] = true
		k.devices[userID][d.DeviceID] = r.Key
	}
	if prev, ok := k.seen[userID]; ok {
		for id := range now {
			if !prev[id] {
				k.notices = append(k.notices, Notice{UserID: userID, Kind: NoticeDeviceAdded, DeviceID: id})
			}
		}
		for id := range prev {
			if !now[id] {
				k.notices = append(k.notices, Notice{UserID: userID, Kind: NoticeDeviceRemoved, DeviceID: id})
			}
		}
	}
	k.seen[userID], k.current[userID] = now, rs
	return nil
}

// Notices returns the key changes noticed so far, oldest first.
func (k *Crypto) Notices() []Notice {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.notices)
}

// Seal encrypts text for roomID, an encrypted DM with peerID, for every
// current device of both users (their directories fetched afresh).
func (k *Crypto) Seal(ctx context.Context, roomID, peerID, text string) (*api.Envelope, error) {
	for _, u := range []string{k.userID, peerID} {
		if err := k.Refresh(ctx, u); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	theirs := k.current[peerID]
	rs := append(slices.Clone(k.current[k.userID]), theirs...)
	k.mu.Unlock()
	if len(theirs) == 0 {
		return nil, fmt.Errorf("seal for %s: the peer has published no device key yet", peerID)
	}
	return e2ee.Seal(k.device, k.userID, roomID, text, rs)
}

// Send seals text and sends it over REST.
func (k *Crypto) Send(ctx context.Context, roomID, peerID, clientID, text string) error {
	env, err := k.Seal(ctx, roomID, peerID, text)
	if err != nil {
		return err
	}
	return k.c.SendEncrypted(ctx, roomID, clientID, env)
}

// Decrypt opens an event's envelope. The sender's device must be one
// this device verified under the sender's identity key (fetched when not
// yet known); e2ee.ErrCannotDecrypt says the envelope was not for this
// device, or was altered.
func (k *Crypto) Decrypt(ctx context.Context, ev api.Event) (string, error) {
	if ev.E2EE == nil {
		return "", fmt.Errorf("event %d of %s is not encrypted", ev.Seq, ev.RoomID)
	}
	key := k.senderKey(ev.SenderID, ev.E2EE.Device)
	if key != nil {
		if text, err := e2ee.Open(k.device, k.userID, ev.RoomID, ev.SenderID, key, ev.E2EE); err == nil {
			return text, nil
		}
	}
	// Unknown, or the device published a new key since: fetch the
	// sender's directory once.
	if err := k.Refresh(ctx, ev.SenderID); err != nil {
		return "", err
	}
	fresh := k.senderKey(ev.SenderID, ev.E2EE.Device)
	if fresh == nil {
		return "", fmt.Errorf("%w: device %s is not a verified device of %s", e2ee.ErrCannotDecrypt, ev.E2EE.Device, ev.SenderID)
	}
	return e2ee.Open(k.device, k.userID, ev.RoomID, ev.SenderID, fresh, ev.E2EE)
}

func (k *Crypto) senderKey(userID, deviceID string) *ecdh.PublicKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.devices[userID][deviceID]
}

// SafetyNumber is the safety number of the DM with peerID, from the
// identity keys this device has pinned (refreshed first).
func (k *Crypto) SafetyNumber(ctx context.Context, peerID string) (string, error) {
	if err := k.Refresh(ctx, peerID); err != nil {
		return "", err
	}
	k.mu.Lock()
	theirs := k.pinned[peerID]
	k.mu.Unlock()
	if theirs == "" {
		return "", fmt.Errorf("safety number: %s has no identity key yet", peerID)
	}
	return e2ee.SafetyNumber(k.userID, k.identity.Public(), peerID, theirs)
}
