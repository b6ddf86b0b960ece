package nsqlookupd

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Options)
		want   string // "" for valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"timeouts off", func(o *Options) { o.ProducerReadTimeout, o.HTTPWriteTimeout = 0, 0 }, ""},
		{"negative producer read timeout", func(o *Options) { o.ProducerReadTimeout = -time.Second },
			"producer-read-timeout must not be negative (got -1s)"},
		{"negative http write timeout", func(o *Options) { o.HTTPWriteTimeout = -time.Second },
			"http-write-timeout must not be negative (got -1s)"},
		{"negative identify timeout", func(o *Options) { o.IdentifyTimeout = -time.Second },
			"identify-timeout must not be negative (got -1s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOptions()
			tt.modify(o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v; want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
