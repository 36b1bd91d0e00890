package clearing

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestIdempotencyKeyPatternAgrees: the OpenAPI document's Idempotency-Key
// schema takes exactly the values the server takes (an outside
// integrator's client, validating by the schema's maxLength alone, sent
// keys the server refused): quoted and unquoted keys at and over 255
// characters, lone and empty quotes, and random values of quotes, spaces
// and visible characters.
func TestIdempotencyKeyPatternAgrees(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name   string
				Schema struct {
					Pattern              string
					MinLength, MaxLength int
				}
			}
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	type schema struct {
		re       *regexp.Regexp
		min, max int
	}
	var schemas []schema
	for _, ops := range doc.Paths {
		for _, op := range ops {
			for _, p := range op.Parameters {
				if p.Name == "Idempotency-Key" {
					schemas = append(schemas, schema{regexp.MustCompile(p.Schema.Pattern), p.Schema.MinLength, p.Schema.MaxLength})
				}
			}
		}
	}
	if len(schemas) == 0 {
		t.Fatal("no Idempotency-Key parameter in the document")
	}
	a := strings.Repeat("a", 255)
	keys := []string{"", "a", `"a"`, `""`, `"`, `"a`, `a"`, `a"b`, `"""`, a, a + "a", `"` + a + `"`, `"` + a + `a"`, `"` + a, a[1:] + `"`, `"` + a[2:] + `"`,
		"a b", `" a"`, "é", "a\x7f", "a\tb"}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{'a', '"', ' ', '~', '!', '#', 0x7f}
	for range 20000 {
		n := rng.IntN(6)
		if rng.IntN(10) == 0 {
			n = 250 + rng.IntN(10)
		}
		k := make([]byte, n)
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
			if rng.IntN(3) > 0 {
				k[i] = 'a'
			}
		}
		keys = append(keys, string(k))
	}
	for _, k := range keys {
		r, _ := http.NewRequest(http.MethodPost, "/v1/enrolments", nil)
		r.Header.Set("Idempotency-Key", k)
		_, err := rawIdempotencyKey(r)
		for _, s := range schemas {
			n := utf8.RuneCountInString(k)
			if documented := s.re.MatchString(k) && n >= s.min && n <= s.max; documented != (err == nil) {
				t.Fatalf("key %q (%d characters): the document takes it %v, the server %v (%v)", k, n, documented, err == nil, err)
			}
		}
	}
}
