package services

import (
	"strings"
	"testing"
	"unicode"
)

func TestSlug(t *testing.T) {
	t.Parallel()
	tests := []struct {
		title, want string
	}{
		{"CDO Demo", "cdo-demo"},
		{"NLTK POS-tagging", "nltk-pos-tagging"},
		{"  --Word   Count!!  ", "word-count"},
		{"a_b.c/d", "a-b-c-d"},
		{"Version 2.0", "version-2-0"},
		{"already-a-slug", "already-a-slug"},
		{"Tom's Tool", "tom-s-tool"},
		{"Café Crème", "cafe-creme"},
		{"Cafe\u0301", "cafe"}, // é written as e + combining acute
		{"Straße", "strasse"},
		{"Æsir Øl Ångström", "aesir-ol-angstrom"},
		{"Łódź Œuvre Þing", "lodz-oeuvre-thing"},
		{"İstanbul", "istanbul"},
		{"ſ", "s"},
		{"Ÿ", "y"},
		{"数据 Tool", "tool"},
		{"Tool数据Two", "tool-two"},
		{"Ωmega", "mega"},
		{"数据", ""},
		{"!!!", ""},
		{"", ""},
		{"\xff\xfeabc", "abc"},
		{strings.Repeat("a", 70), strings.Repeat("a", 63)},
		{strings.Repeat("a", 62) + " b", strings.Repeat("a", 62)}, // no trailing dash after the cut
		{strings.Repeat("ab ", 40), strings.TrimSuffix(strings.Repeat("ab-", 21), "-")},
	}
	for _, tt := range tests {
		if got := Slug(tt.title); got != tt.want {
			t.Errorf("Slug(%q) = %q, want %q", tt.title, got, tt.want)
		}
	}
}

// Every letter of the Latin ranges the table covers gives a non-empty slug,
// so no European name loses a letter to a gap in the table.
func TestSlugLatinTable(t *testing.T) {
	t.Parallel()
	for r := rune(0xC0); r <= 0x17F; r++ {
		if !unicode.IsLetter(r) {
			continue
		}
		if got := Slug(string(r)); got == "" || !validSlug(got) {
			t.Errorf("Slug(%q U+%04X) = %q", r, r, got)
		}
	}
}

func FuzzSlug(f *testing.F) {
	for _, s := range []string{"CDO Demo", "NLTK POS-tagging", "Straße", "数据", "a--b", strings.Repeat("x ", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, title string) {
		s := Slug(title)
		if s != "" && !validSlug(s) {
			t.Fatalf("Slug(%q) = %q, not a valid slug", title, s)
		}
		if again := Slug(s); again != s {
			t.Fatalf("Slug is not idempotent: %q → %q → %q", title, s, again)
		}
	})
}
