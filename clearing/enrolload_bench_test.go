package clearing

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// BenchmarkLoadEnrolments: what a start spends digesting the enrolments
// (loadDenyList over a store of one record a medium): from the shares
// stored beside the index, and reckoning every share from the riders'
// histories, as the first start of this build on an earlier build's store
// does once (and writes them back, here discarded each time).
func BenchmarkLoadEnrolments(b *testing.B) {
	const media = 100_000
	st, err := OpenStore(filepath.Join(b.TempDir(), "store"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	wb := st.db.NewWriteBatch()
	for i := range media {
		token := fmt.Sprintf("card-%d", i)
		k := fare.HashDeny(fare.Card, token)
		e := Enrolment{Rider: RiderAccount([]byte("bench"), fare.Card, token), Media: "card", Key: k.Hex(), Category: "concession",
			ApprovedBy: "desk", ValidFrom: at, ValidUntil: at.Add(30 * 24 * time.Hour), Seq: uint64(i + 1)}
		v, _ := json.Marshal(e)
		sum := fare.EnrolEntrySum(k, e.Seq, EnrolmentPeriods([]Enrolment{e}))
		for _, kv := range [][2][]byte{{enrolStoreKey(e.Rider, e.Seq), v}, {append([]byte{pEnrolIndex}, k[:]...), []byte(e.Rider)}, {enrolSumKey(k), sum[:]}} {
			if err := wb.Set(kv[0], kv[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	setMeta := func(sumsAt uint64) {
		if err := st.db.Update(func(txn *badger.Txn) error {
			if err := setU64(txn, metaEnrolVersion, media); err != nil {
				return err
			}
			return setU64(txn, metaEnrolSumsAt, sumsAt)
		}); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name   string
		sumsAt uint64
	}{{"from-the-shares", media}, {"reckoning-every-share", 0}} {
		b.Run(fmt.Sprintf("%s/media=%d", c.name, media), func(b *testing.B) {
			c2 := &Clearing{store: st, log: slog.New(slog.DiscardHandler)}
			b.ReportAllocs()
			for b.Loop() {
				setMeta(c.sumsAt)
				if err := c2.loadDenyList(); err != nil {
					b.Fatal(err)
				}
				if c2.deny.enrolCount != media {
					b.Fatalf("%d media", c2.deny.enrolCount)
				}
			}
		})
	}
}
