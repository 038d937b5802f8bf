package room

import "time"

// SetEraseAgain sets how long after erasing a deleted message's text the
// replica erases it again (eraseAgainAfter in production).
func (s *Service) SetEraseAgain(d time.Duration) { s.eraseAgain = d }

// SetNow sets the Service's clock.
func (s *Service) SetNow(now func() time.Time) { s.now = now }

// MaxAnnouncementBytes is the size one announcement is split at.
const MaxAnnouncementBytes = maxAnnounceBytes
