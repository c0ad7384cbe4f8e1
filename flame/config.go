package flame

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Infinity means "no limit" for any timeout or idle setting.
const Infinity time.Duration = math.MaxInt64

// Defaults, as in FLAME.
const (
	DefaultName              = "flame"
	DefaultMaxConcurrency    = 100
	DefaultTimeout           = 30 * time.Second
	DefaultBootTimeout       = 30 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultIdleShutdownAfter = 30 * time.Second
	// DefaultMinIdleShutdownAfter keeps Min runners forever.
	DefaultMinIdleShutdownAfter = Infinity
	// bootRetryAfter is how long after a failed boot a retry may start.
	bootRetryAfter = time.Second
	// maxParallelMinBoots bounds NewPool's parallel Min boots.
	maxParallelMinBoots = 10
)

// Config configures a Pool. Zero durations mean the default; negative ones
// are invalid.
type Config struct {
	Name            string        // pool name for logs, events, stats; default "flame"
	Min             int           // runners kept booted; >= 0
	Max             int           // upper bound on booted + booting runners; >= 1, >= Min
	MaxConcurrency  int           // slots per runner; default 100; >= 1
	SingleUse       bool          // a runner serves one round of work, then shuts down
	Backend         Backend       // default LocalBackend{}
	Timeout         time.Duration // execution limit of one call; default 30s
	BootTimeout     time.Duration // limit of one boot, and the default checkout wait; default 30s
	ShutdownTimeout time.Duration // grace for a runner's in-flight work at shutdown; default 30s

	// IdleShutdownAfter is the idle period of runners booted for demand,
	// default 30s. A runner is checked at the end of each of its periods and
	// shuts down when no checkout or release touched it during the whole
	// period (so its load stayed 0), IdleCheck (if set) returns true, and
	// enough runners remain for Min. Otherwise a new period starts. So a
	// runner idles down between one and two periods after its last work
	// ended.
	IdleShutdownAfter time.Duration
	// IdleCheck, if set, must return true for a runner to idle down.
	IdleCheck func() bool
	// MinIdleShutdownAfter is the same for the runners booted to reach or
	// keep Min; default Infinity: they stay.
	MinIdleShutdownAfter time.Duration

	OnGrowStart func(GrowEvent)        // in the boot goroutine, before Backend.Boot; a panic fails the boot
	OnGrowEnd   func(GrowEvent, error) // err == nil: the runner is up
	OnShrink    func(ShrinkEvent)
	// Logger receives the pool's logs: failed boots, failed casts, cast
	// panics and abandoned shutdowns at Error level, runners up and down at
	// Debug. Nil means slog.Default(). To silence the pool, set
	// slog.New(slog.DiscardHandler).
	Logger *slog.Logger
}

// GrowEvent reports a boot. Count is booted + booting runners: for
// OnGrowStart when the boot was decided (this one included), for OnGrowEnd
// after the boot ended.
type GrowEvent struct {
	Pool     string
	Count    int
	RunnerID uint64
}

// ShrinkEvent reports a runner removed from the pool, with Count the booted
// + booting runners after it and Reason why: ErrIdleShutdown, ErrResized,
// ErrSingleUse, ErrRunnerDown (it crashed) or ErrClosed.
type ShrinkEvent struct {
	Pool     string
	Count    int
	RunnerID uint64
	Reason   error
}

// normalize validates c and fills in the defaults.
func (c Config) normalize() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if err := checkBounds(c.Min, c.Max); err != nil {
		errs = append(errs, err)
	}
	// If chains rather than switches here and below: mutation testing
	// sees the coverage of statements, and a case's condition is none.
	if c.MaxConcurrency < 0 {
		bad("MaxConcurrency must be >= 1 (0 means %d), got %d", DefaultMaxConcurrency, c.MaxConcurrency)
	} else if c.MaxConcurrency > maxMaxConcurrency {
		bad("MaxConcurrency must be <= %d, got %d", maxMaxConcurrency, c.MaxConcurrency)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Timeout", &c.Timeout, DefaultTimeout},
		{"BootTimeout", &c.BootTimeout, DefaultBootTimeout},
		{"ShutdownTimeout", &c.ShutdownTimeout, DefaultShutdownTimeout},
		{"IdleShutdownAfter", &c.IdleShutdownAfter, DefaultIdleShutdownAfter},
		{"MinIdleShutdownAfter", &c.MinIdleShutdownAfter, DefaultMinIdleShutdownAfter},
	} {
		if *d.v < 0 {
			bad("%s must not be negative, got %v", d.name, *d.v)
		} else if *d.v == 0 {
			*d.v = d.def
		}
	}
	if v, ok := c.Backend.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.Backend == nil {
		c.Backend = LocalBackend{}
	}
	return c, nil
}

// checkBounds validates Min and Max, for NewPool and Resize.
func checkBounds(min, max int) error {
	var errs []error
	if max < 1 {
		errs = append(errs, fmt.Errorf("%w: Max must be >= 1, got %d", ErrInvalidConfig, max))
	}
	if min < 0 {
		errs = append(errs, fmt.Errorf("%w: Min must be >= 0, got %d", ErrInvalidConfig, min))
	}
	if max >= 1 && min > max {
		errs = append(errs, fmt.Errorf("%w: Min (%d) must not exceed Max (%d)", ErrInvalidConfig, min, max))
	}
	return errors.Join(errs...)
}

// withLimit returns ctx bounded by d, where Infinity means no bound.
func withLimit(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d == Infinity {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
