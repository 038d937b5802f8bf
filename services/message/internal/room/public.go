package room

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
)

// The public-room index is a list of pages, so that neither adding a room
// nor listing a page reads the whole index (docs/message.md, "The public
// room list"). Page 0 is the key the index had when it was one key
// (publicRoomsKey), pages 1, 2, … are publicPageKey(n), and
// publicHeadKey says which page is the last. Rooms are appended to the
// last page until it holds PublicPageSize ids; only ever added.
const (
	publicHeadKey = "rooms|public|head"
	// PublicPageSize is how many ids a page of the index holds.
	PublicPageSize = 256
	// MaxPublicLimit is the most rooms one GET /api/v1/rooms/public
	// answers; DefaultPublicLimit when the client names no limit.
	MaxPublicLimit     = 100
	DefaultPublicLimit = 50
)

func publicPageKey(n int) string {
	if n == 0 {
		return publicRoomsKey
	}
	return publicRoomsKey + "|" + strconv.Itoa(n)
}

// publicHead is the index's head: the number of its last page.
type publicHead struct {
	Last int `json:"last"`
}

// indexPublic adds a public room to the index. Like every step of
// materialize it may run any number of times, on any replica: an id
// already in the last two pages is not added again. (A replica that
// stalled while a whole page of other rooms was created could add a room
// twice; Public drops the repeat from each answer.)
func (s *Service) indexPublic(ctx context.Context, roomID string) error {
	return s.retry(ctx, func() error {
		headIt, err := s.getItem(ctx, publicHeadKey)
		if err != nil {
			return err
		}
		var head publicHead
		if headIt.Found() {
			if err := decode(headIt, &head); err != nil {
				return err
			}
		}
		for {
			keys := []string{publicPageKey(head.Last)}
			if head.Last > 0 {
				keys = append(keys, publicPageKey(head.Last-1))
			}
			pages, err := s.bulkGet(ctx, keys...)
			if err != nil {
				return err
			}
			var last idList
			for i, it := range pages {
				if !it.Found() {
					continue
				}
				var l idList
				if err := decode(it, &l); err != nil {
					return err
				}
				if slices.Contains(l.IDs, roomID) {
					return nil
				}
				if i == 0 {
					last = l
				}
			}
			if len(last.IDs) < PublicPageSize {
				last.IDs = append(last.IDs, roomID)
				return s.store.Write(ctx, guarded(pages[0], last))
			}
			// The last page is full: open the next one. A racing writer
			// that opened it first makes this a conflict, and the retry
			// appends there.
			if err := s.store.Write(ctx, guarded(headIt, publicHead{Last: head.Last + 1})); err != nil {
				return err
			}
			if headIt, err = s.getItem(ctx, publicHeadKey); err != nil {
				return err
			}
			if err := decode(headIt, &head); err != nil {
				return err
			}
		}
	})
}

// PublicPage is one page of the public room list, newest rooms first;
// Next is the cursor of the page after it ("" at the end).
type PublicPage struct {
	Rooms []api.Room
	Next  string
}

// errBadCursor answers a cursor Public did not make.
var errBadCursor = apierror.Invalidf("invalid_cursor", "cursor must be a next_cursor from an earlier page")

// Public lists up to limit public rooms, newest first, from cursor (""
// for the first page). A cursor is "<page>.<offset>": the rooms of that
// page of the index below offset come next. A page costs a Get of the
// index's head (first page only), one or two Gets of index pages and one
// BulkGet of the listed rooms' heads.
func (s *Service) Public(ctx context.Context, cursor string, limit int) (PublicPage, error) {
	if limit < 1 || limit > MaxPublicLimit {
		return PublicPage{}, apierror.Invalidf("invalid_limit", "limit must be an integer from 1 to %d", MaxPublicLimit)
	}
	page, offset := 0, -1 // offset -1: from the page's end
	if cursor == "" {
		it, err := s.getItem(ctx, publicHeadKey)
		if err != nil {
			return PublicPage{}, fmt.Errorf("public rooms: %w", err)
		}
		var head publicHead
		if it.Found() {
			if err := decode(it, &head); err != nil {
				return PublicPage{}, err
			}
		}
		page = head.Last
	} else {
		var err error
		if page, offset, err = parseCursor(cursor); err != nil {
			return PublicPage{}, err
		}
	}
	var ids []string
	seen := map[string]bool{}
	next := ""
	for page >= 0 && len(ids) < limit {
		it, err := s.getItem(ctx, publicPageKey(page))
		if err != nil {
			return PublicPage{}, fmt.Errorf("public rooms: %w", err)
		}
		var l idList
		if it.Found() {
			if err := decode(it, &l); err != nil {
				return PublicPage{}, err
			}
		}
		if offset < 0 || offset > len(l.IDs) {
			offset = len(l.IDs)
		}
		for offset > 0 && len(ids) < limit {
			offset--
			if id := l.IDs[offset]; !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if offset == 0 {
			page, offset = page-1, -1
		}
	}
	if page >= 0 {
		next = strconv.Itoa(page) + "." + strconv.Itoa(max(offset, -1))
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = roomKey(id)
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return PublicPage{}, fmt.Errorf("public rooms: %w", err)
	}
	out := PublicPage{Rooms: make([]api.Room, 0, len(items)), Next: next}
	for _, it := range items {
		if !it.Found() {
			continue
		}
		var r roomRecord
		if err := decode(it, &r); err != nil {
			return PublicPage{}, err
		}
		out.Rooms = append(out.Rooms, r.api())
	}
	return out, nil
}

// parseCursor reads "<page>.<offset>" (offset -1: the whole page).
func parseCursor(c string) (page, offset int, err error) {
	p, o, ok := strings.Cut(c, ".")
	if !ok || len(c) > 24 {
		return 0, 0, errBadCursor
	}
	page, err1 := strconv.Atoi(p)
	offset, err2 := strconv.Atoi(o)
	if err1 != nil || err2 != nil || page < 0 || offset < -1 {
		return 0, 0, errBadCursor
	}
	return page, offset, nil
}
