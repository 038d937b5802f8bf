package hub

import (
	"context"
	"slices"
	"strconv"
	"time"

	json "github.com/goccy/go-json"
	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
)

func itoa(n int) string { return strconv.Itoa(n) }

// handle answers one client frame. Every refusal is an error frame; the
// connection stays open (unless refusals turn into abuse, see refuse).
func (c *conn) handle(data []byte) {
	f, err := decodeFrame(data)
	if err != nil {
		c.h.metrics.framesIn[inInvalid].Inc()
		c.refuseErr("", err)
		return
	}
	c.h.metrics.framesIn[inKindOf(f.Type)].Inc()
	if !c.limiter.Allow() {
		c.refuse(f.ClientID, "rate_limited", "too many frames; slow down")
		return
	}
	// Live delivery starts with the client's first frame (or when the hold
	// after hello ends), after a resume is applied, so resumed rooms start
	// from the client's own cursors.
	if !c.firstFrame {
		c.firstFrame = true
		defer c.goLive()
	}
	switch f.Type {
	case "":
		c.refuse(f.ClientID, "missing_field", "type is required")
	case api.FrameSend:
		c.submit(f, api.EventMessage)
	case api.FrameEdit:
		c.submit(f, api.EventEdit)
	case api.FrameDelete:
		c.submit(f, api.EventDelete)
	case api.FrameTyping:
		c.typing(f)
	case api.FrameRead:
		c.read(f)
	case api.FrameResume:
		c.resume(data, f)
	case api.FrameAuth:
		c.reauth(f)
	case api.FramePing:
		c.send(frame{b: encode(api.ServerFrame{Type: api.FramePong}), kind: outPong})
	default:
		c.refuse(f.ClientID, "unknown_type", "unknown frame type "+strconv.Quote(truncate(f.Type, 32)))
	}
}

// decodeFrame decodes a client frame. encoding/json would turn invalid
// UTF-8 and escaped lone surrogates into U+FFFD, and the text would be
// stored altered (or two client_ids would become one): such a frame is
// refused with the code of the field it was in (validate.JSON), as a REST
// body is. A text frame must be UTF-8 anyway (RFC 6455).
func decodeFrame(data []byte) (api.ClientFrame, error) {
	var f api.ClientFrame
	if err := validate.JSON(data); err != nil {
		return f, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, apierror.Invalidf("invalid_json", "a frame is one JSON object: %v", err)
	}
	return f, nil
}

func truncate(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// submit validates a send, edit or delete and queues it for publishing.
func (c *conn) submit(f api.ClientFrame, kind string) {
	ref := truncate(f.ClientID, api.MaxClientIDLen)
	switch {
	case f.RoomID == "":
		c.refuse(ref, "missing_field", "room_id is required")
		return
	case f.ClientID == "":
		c.refuse(ref, "missing_field", "client_id is required")
		return
	}
	if err := validate.ClientID(f.ClientID, true); err != nil {
		c.refuseErr(ref, err)
		return
	}
	if kind != api.EventMessage && f.TargetSeq <= 0 {
		c.refuse(ref, "missing_field", "target_seq is required")
		return
	}
	if kind != api.EventDelete {
		if err := e2ee.CheckContent(f.Text, f.E2EE); err != nil {
			c.refuseErr(ref, err)
			return
		}
	}
	if !c.member(f.RoomID) {
		c.refuse(ref, "not_a_member", "you are not a member of this room")
		return
	}
	if !c.addPending(f.RoomID, f.ClientID) {
		c.refuse(ref, "too_many_pending", "too many sends await their ack")
		return
	}
	sub := events.Submission{
		Type: kind, RoomID: f.RoomID, SenderID: c.userID, ClientID: f.ClientID,
		Text: f.Text, E2EE: f.E2EE, TargetSeq: f.TargetSeq, SentAt: time.Now().UTC(),
	}
	span := c.h.startSend(sub)
	if !c.h.submits.add(outgoing{sub: sub, from: c, span: span}) {
		if span != nil {
			span.End()
		}
		c.takePending(f.RoomID, f.ClientID)
		c.refuse(ref, "server_busy", "the server is overloaded; retry with the same client_id")
	}
}

// typing forwards a typing signal, at most one per user and room per
// TypingEvery; extra ones are dropped silently.
func (c *conn) typing(f api.ClientFrame) {
	if f.RoomID == "" {
		c.refuse("", "missing_field", "room_id is required")
		return
	}
	if !c.member(f.RoomID) {
		c.refuse("", "not_a_member", "you are not a member of this room")
		return
	}
	if !c.h.users.allowTyping(c.userID, f.RoomID, time.Now().UnixNano(), int64(c.h.cfg.TypingEvery)) {
		return
	}
	sig := events.Signal{Kind: events.SignalTyping, RoomID: f.RoomID, UserID: c.userID}
	c.h.signals.add(outgoing{sig: sig, from: c})
}

// read moves the user's read marker through the message service.
func (c *conn) read(f api.ClientFrame) {
	switch {
	case f.RoomID == "":
		c.refuse("", "missing_field", "room_id is required")
		return
	case f.Seq < 0:
		c.refuse("", "invalid_seq", "seq must not be negative") // as over REST
		return
	case f.Seq == 0:
		c.refuse("", "missing_field", "seq is required")
		return
	}
	if !c.member(f.RoomID) {
		c.refuse("", "not_a_member", "you are not a member of this room")
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	if err := c.h.deps.Messages.MarkRead(ctx, f.RoomID, c.userID, f.Seq); err != nil {
		c.refuseErr("", err)
	}
}

// resume moves the connection's cursors to the client's last seen seqs;
// rooms behind their head catch up from the message service before live
// events continue. A resume sent as the first frame is applied before any
// live event; a later one rewinds, so events already sent on this
// connection after the given seq are sent again (in order).
//
// A room the user is not in, or a seq below 0 or past the room's head
// (the client cannot have seen it), is refused and that room goes on from
// where it was: a cursor past the head would mute the room on this socket
// until the room caught up, and one below 0 is no seq. The refusals of a
// frame are one error frame per code, listing the rooms, and spend one
// strike: a client that left many rooms elsewhere must still be able to
// resume.
func (c *conn) resume(raw []byte, f api.ClientFrame) {
	// "rooms":{} is a valid resume of nothing; only a missing key is refused.
	var probe struct {
		Rooms *json.RawMessage `json:"rooms"`
	}
	_ = json.Unmarshal(raw, &probe)
	if probe.Rooms == nil {
		c.refuse("", "missing_field", "rooms is required")
		return
	}
	var unknown, invalid, ahead, unchecked []string
	c.mu.Lock()
	for id, seq := range f.Rooms {
		cr := c.rooms[id]
		switch {
		case cr == nil:
			unknown = append(unknown, id)
		case seq < 0:
			invalid = append(invalid, id)
		case seq > max(cr.seq, cr.room.head.Load()):
			ahead = append(ahead, id)
		}
	}
	c.mu.Unlock()
	if len(ahead) > 0 {
		// This replica may lag the room's true head by the events in
		// flight to it; the message service knows it. One call, whatever
		// the number of rooms.
		past, err := c.pastHead(ahead, f.Rooms)
		if err != nil {
			unchecked = ahead
		}
		invalid = append(invalid, past...)
	}
	refused := map[string]bool{}
	for _, ids := range [][]string{unknown, invalid, unchecked} {
		for _, id := range ids {
			refused[id] = true
		}
	}
	c.mu.Lock()
	for id, seq := range f.Rooms {
		cr := c.rooms[id]
		if cr == nil || refused[id] {
			continue
		}
		cr.seq = seq
		if c.live && !cr.syncing && cr.seq < cr.room.head.Load() {
			c.startSync(id, cr)
		}
	}
	c.mu.Unlock()
	if len(unchecked) > 0 {
		// Not the client's fault: no strike.
		c.refuseRooms("unavailable", "the rooms' last seqs could not be checked; these rooms continue from where they were", unchecked)
	}
	if len(unknown)+len(invalid) == 0 {
		return
	}
	if !c.strikes.Allow() {
		c.close(api.ClosePolicy, "too many refused frames")
		return
	}
	if len(unknown) > 0 {
		c.refuseRooms("not_a_member", "you are not a member of these rooms", unknown)
	}
	if len(invalid) > 0 {
		c.refuseRooms("invalid_seq", "a resume seq must be from 0 to the room's last seq; these rooms continue from where they were", invalid)
	}
}

// pastHead returns the rooms among ids whose resume seq is past the head
// the message service reports for them, or an error when it cannot be
// asked.
func (c *conn) pastHead(ids []string, seqs map[string]int64) ([]string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	rooms, err := c.h.deps.Messages.UserRooms(ctx, c.userID)
	if err != nil {
		c.h.log.Warn("resume: room heads unavailable", "user_id", c.userID, "err", err)
		return nil, err
	}
	heads := make(map[string]int64, len(rooms))
	for _, rc := range rooms {
		heads[rc.RoomID] = rc.LastSeq
	}
	var out []string
	for _, id := range ids {
		if head, ok := heads[id]; !ok || seqs[id] > head {
			out = append(out, id)
		}
	}
	return out, nil
}

// refuseRooms sends one error frame naming rooms (sorted, each cut to 64
// characters); the caller has spent the strike.
func (c *conn) refuseRooms(code, message string, rooms []string) {
	slices.Sort(rooms)
	ids := make([]string, len(rooms))
	for i, id := range rooms {
		ids[i] = truncate(id, 64)
	}
	c.h.metrics.refused(code)
	c.send(frame{b: encode(api.ErrorFrame{Type: api.FrameError, Code: code, Message: message, RoomIDs: ids}), kind: outError})
}

// reauth replaces the connection's token with a refreshed one of the same
// user and session, pushing back the token_expired close.
func (c *conn) reauth(f api.ClientFrame) {
	if f.Token == "" {
		c.refuse("", "missing_field", "token is required")
		return
	}
	claims, err := c.h.deps.Verifier.Verify(c.ctx, f.Token)
	if err != nil {
		c.refuseErr("", err)
		return
	}
	if claims.UserID != c.userID || claims.SessionID != c.sessionID {
		c.refuse("", "token_mismatch", "the token belongs to another user or session")
		return
	}
	c.setExpiry(claims.ExpiresAt)
}

// setExpiry arms the token_expired close at exp.
func (c *conn) setExpiry(exp time.Time) {
	if exp.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := time.Until(exp)
	if c.expiry == nil {
		c.expiry = time.AfterFunc(d, func() { c.close(api.CloseTokenExpired, "access token expired") })
		return
	}
	c.expiry.Reset(d)
}
