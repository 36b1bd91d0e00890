package clearing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
)

// readJSONBody decodes a request's JSON body into v (a pointer to a
// struct) as the API's OpenAPI document describes it, refusing what
// encoding/json would let through: a Content-Type other than
// application/json (415), a body over limit bytes (413), a member whose
// name matches a field only in another case or matches none (400), and
// anything after the object (400). It returns the status to answer with
// and an error naming the problem.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int64, v any) (int, error) {
	if ct := r.Header.Get("Content-Type"); ct == "" {
		return http.StatusUnsupportedMediaType, errors.New("no Content-Type: send the body as application/json")
	} else if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: want application/json", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", limit)
		}
		return http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return http.StatusBadRequest, fmt.Errorf("body is not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return http.StatusBadRequest, errors.New("body holds more than one JSON value")
	}
	if err := exactMembers(raw, reflect.TypeOf(v).Elem(), ""); err != nil {
		return http.StatusBadRequest, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return http.StatusBadRequest, err
	}
	return 0, nil
}

// exactMembers checks that every member of each JSON object in raw names a
// field of t (by its json tag, in the same case), down through nested
// structs and slices of them. at is the path so far, for the error.
func exactMembers(raw any, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := raw.(map[string]any)
		if !ok {
			return nil // a type mismatch: json.Unmarshal names it
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
		}
		for k, v := range obj {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("unknown field %q%s (field names are case-sensitive)", k, where(at))
			}
			if err := exactMembers(v, ft, at+"."+k); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := raw.([]any)
		if !ok {
			return nil
		}
		for i, v := range arr {
			if err := exactMembers(v, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func where(at string) string {
	if at == "" {
		return ""
	}
	return " in " + strings.TrimPrefix(at, ".")
}
