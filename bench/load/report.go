package load

import (
	"math"
	"slices"
	"time"
)

func (r *runState) report() Report {
	rep := Report{Clients: r.cfg.Clients, Rooms: len(r.rooms), Rate: r.cfg.Rate, Seconds: r.cfg.Duration.Seconds(),
		RefusedBy: map[string]int{}, Connections: len(r.socks)}
	var lat, ackLat []time.Duration
	for _, rm := range r.rooms {
		for k := range rm.sent {
			if !r.counted(rm, k) {
				continue
			}
			rep.Published++
			if rm.acked[k].Load() {
				rep.Acked++
			}
		}
	}
	for _, s := range r.socks {
		s.mu.Lock()
		for k, n := range s.got {
			if !r.counted(s.room, k) || !s.room.acked[k].Load() {
				continue
			}
			rep.Expected++
			if n == 0 {
				rep.Lost++
				continue
			}
			rep.Delivered++
			rep.Duplicated += int(n) - 1
		}
		for code, n := range s.refused {
			rep.RefusedBy[code] += n
			rep.Refused += n
		}
		rep.OutOfOrder += s.outOf
		lat = append(lat, s.lat...)
		ackLat = append(ackLat, s.ackLat...)
		s.mu.Unlock()
	}
	rep.Disconnects = int(r.disconnects.Load())
	slices.Sort(lat)
	slices.Sort(ackLat)
	rep.P50, rep.P90, rep.P99 = msAt(lat, 0.50), msAt(lat, 0.90), msAt(lat, 0.99)
	if len(lat) > 0 {
		rep.Max = ms(lat[len(lat)-1])
	}
	rep.AckP50, rep.AckP99 = msAt(ackLat, 0.50), msAt(ackLat, 0.99)
	return rep
}

func msAt(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return ms(sorted[max(0, min(i, len(sorted)-1))])
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
