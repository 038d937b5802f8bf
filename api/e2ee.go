package api

import "time"

// Envelope is the ciphertext of an encrypted DM's message or edit, in
// place of Text (docs/e2ee.md describes every field; package api/e2ee
// builds, opens and checks envelopes). Binary fields are base64url
// without padding.
type Envelope struct {
	V      int          `json:"v"`
	Alg    string       `json:"alg"`
	Device string       `json:"device"` // the sender's device id
	EPK    string       `json:"epk"`    // the ephemeral public key
	IV     string       `json:"iv"`
	CT     string       `json:"ct"`
	Keys   []WrappedKey `json:"keys"`
}

// WrappedKey is a message's content key wrapped for one device of one
// user.
type WrappedKey struct {
	User   string `json:"user"`
	Device string `json:"device"`
	WK     string `json:"wk"`
}

// DeviceKey is one device's public key in a user's key directory, signed
// by the user's identity key.
type DeviceKey struct {
	DeviceID  string    `json:"device_id"`
	PublicKey string    `json:"public_key"`
	Signature string    `json:"signature"`
	CreatedAt time.Time `json:"created_at"`
}

// KeyDirectory answers GET /api/v1/users/{id}/keys: the user's identity
// key (empty when the user has none) and device keys, oldest first.
type KeyDirectory struct {
	UserID      string      `json:"user_id"`
	IdentityKey string      `json:"identity_key,omitempty"`
	Devices     []DeviceKey `json:"devices"`
	UpdatedAt   time.Time   `json:"updated_at,omitzero"`
}

// PutDeviceKeyRequest is the body of PUT
// /api/v1/users/{id}/keys/devices/{device_id}. IdentityKey must be the
// directory's, or the first one; ReplaceIdentity replaces a different one
// and removes every device it signed.
type PutDeviceKeyRequest struct {
	IdentityKey     string `json:"identity_key"`
	PublicKey       string `json:"public_key"`
	Signature       string `json:"signature"`
	ReplaceIdentity bool   `json:"replace_identity,omitempty"`
}
