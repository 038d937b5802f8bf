package room

import "time"

// SetEraseAgain sets how long after erasing a deleted message's text the
// replica erases it again (eraseAgainAfter in production).
func (s *Service) SetEraseAgain(d time.Duration) { s.eraseAgain = d }

// SetNow sets the Service's clock.
func (s *Service) SetNow(now func() time.Time) { s.now = now }

// MaxAnnouncementBytes is the size one announcement is split at.
const MaxAnnouncementBytes = maxAnnounceBytes

// SetRideWait sets how long a materialization waits for a round to take
// its writes (rideWait in production).
func (s *Service) SetRideWait(d time.Duration) { s.writer.rideWait = d }

// RideOffered reports whether a materialization waits for a round to take
// its writes.
func (s *Service) RideOffered() bool {
	s.writer.mu.Lock()
	defer s.writer.mu.Unlock()
	return s.writer.ride != nil
}
