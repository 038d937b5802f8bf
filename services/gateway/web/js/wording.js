// Human wording for the server's error codes (docs/api.md,
// docs/protocol.md): what happened and what the person can do.

const WORDS = {
  invalid_credentials: "That username and password do not match.",
  username_taken: "That username is taken. Try another one.",
  invalid_username: "Usernames are 3–32 characters: lowercase letters, digits, _ . -",
  invalid_password: "That password is not accepted: use at least 8 characters.",
  invalid_display_name: "That display name is not accepted: use at most 64 characters.",
  too_many_attempts: "Too many tries. Wait a minute and try again.",
  invalid_text:
    "This message cannot be sent as it is: it must have 1 to 4,000 characters and no control or text-direction characters. Edit it and send again.",
  text_too_long: "This message is over 4,000 characters. Shorten it and send again.",
  invalid_client_id: "papo made a bad request. Send it again.",
  client_id_reused: "papo reused an id for a different message. Send it again.",
  not_a_member: "You are not in this room any more.",
  not_member: "You are not in this room any more.",
  room_not_found: "This room does not exist any more.",
  rate_limited: "You are sending too fast. Wait a moment, then send again.",
  message_deleted: "That message was deleted meanwhile.",
  not_sender: "You can only change your own messages.",
  invalid_target: "That message cannot be changed.",
  dm_closed: "This conversation is closed.",
  dm_self: "That is you! Pick someone else.",
  dm_leave: "A direct message cannot be left.",
  not_invited: "This room is private: you need an invitation.",
  too_many_rooms: "You are in too many rooms. Leave one first.",
  invalid_name: "Room names are 1–80 characters.",
  user_not_found: "Nobody has that username.",
  busy: "papo is busy. Wait a moment and try again.",
  unavailable: "papo is having trouble right now. Try again in a moment.",
  shutting_down: "papo is restarting. Your message will go out when it is back.",
  network: "The server cannot be reached. Check your connection.",
  peer_has_no_keys:
    "They have not set up encrypted messages yet (they need to sign in once). Wait for them, or write in your ordinary DM.",
  e2ee_not_ready: "This browser has no keys for encrypted messages.",
  e2ee_failed: "This message could not be encrypted. Try again.",
  encryption_required: "This conversation is end-to-end encrypted; the message could not be encrypted. Try again.",
  invalid_envelope: "This encrypted message was refused by the server. Try again.",
};

// humanError words an ApiError or an error frame ({code, message}).
export function humanError(e) {
  if (!e) return "Something went wrong. Try again.";
  return WORDS[e.code] || e.message || "Something went wrong. Try again.";
}
