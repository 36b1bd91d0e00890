package clearing

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/templates"
)

// BenchmarkFaceDuplicateCheck times what one enrolment of three templates
// adds to check that the face is not enrolled under another subject
// (checkNotEnrolled: every enrolled template read from the encrypted
// store and compared), with n subjects of three templates enrolled.
//
//	go test -run '^$' -bench FaceDuplicateCheck ./clearing
func BenchmarkFaceDuplicateCheck(b *testing.B) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	face := func() (v [templates.Dim]float32) {
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.115) // norm about 1.3, as dlib's
		}
		return v
	}
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("subjects=%d", n), func(b *testing.B) {
			st, err := templates.Open(b.TempDir(), make([]byte, 32), templates.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			model := gallery.DlibModels[0]
			for i := range n {
				if _, err := st.Enrol(ctx, fmt.Sprintf("s-%d", i), templates.Consent{GivenBy: "x", At: time.Now(), Purpose: "p"}, model, face(), face(), face()); err != nil {
					b.Fatal(err)
				}
			}
			c := &Clearing{faces: &faces{store: st}}
			req := FaceEnrolRequest{Subject: "new", ModelID: model, Descriptors: [][128]float32{face(), face(), face()}}
			for b.Loop() {
				if err := c.checkNotEnrolled(ctx, &req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(3*n), "ns/enrolled-template")
		})
	}
}
