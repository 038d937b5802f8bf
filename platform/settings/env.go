package settings

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Getenv reads one variable and whether it is set: os.LookupEnv in main,
// Env(map) in tests, so tests never touch the process environment and
// may run in parallel. A variable set to the empty string is set (an
// empty METRICS_ADDR turns the metrics listener off).
type Getenv func(key string) (string, bool)

// Env returns a Getenv over vars, for tests.
func Env(vars map[string]string) Getenv {
	return func(key string) (string, bool) {
		v, ok := vars[key]
		return v, ok
	}
}

// fill sets the fields of the struct spec points to, the way envconfig
// does without a prefix: a field is read from the variable its `envconfig`
// tag names (its upper-cased name without one), falls back to its
// `default` tag, and keeps its value when neither is set; `ignored:"true"`
// skips it; an embedded struct's fields are read as the outer struct's.
// Types: string, bool, ints, floats, time.Duration, []string (comma
// separated) and anything that is an encoding.TextUnmarshaler.
func fill(getenv Getenv, spec any) error {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("settings: %T is not a pointer to a struct", spec)
	}
	v = v.Elem()
	t := v.Type()
	for i := range t.NumField() {
		sf, f := t.Field(i), v.Field(i)
		if !sf.IsExported() || sf.Tag.Get("ignored") == "true" {
			continue
		}
		if f.Kind() == reflect.Struct && !isText(f) {
			if err := fill(getenv, f.Addr().Interface()); err != nil {
				return err
			}
			continue
		}
		key := sf.Tag.Get("envconfig")
		if key == "" {
			key = strings.ToUpper(sf.Name)
		}
		value, ok := getenv(key)
		if !ok {
			value, ok = sf.Tag.Lookup("default")
		}
		if !ok {
			continue
		}
		if err := set(f, value); err != nil {
			return fmt.Errorf("%s %q: %w", key, value, err)
		}
	}
	return nil
}

func isText(f reflect.Value) bool {
	_, ok := f.Addr().Interface().(encoding.TextUnmarshaler)
	return ok
}

var durationType = reflect.TypeFor[time.Duration]()

// set parses value into f.
func set(f reflect.Value, value string) error {
	if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(value))
	}
	if f.Type() == durationType {
		d, err := time.ParseDuration(value)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(value)
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(value, 0, f.Type().Bits())
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(value, 0, f.Type().Bits())
		if err != nil {
			return err
		}
		f.SetUint(n)
	case reflect.Float32, reflect.Float64:
		x, err := strconv.ParseFloat(value, f.Type().Bits())
		if err != nil {
			return err
		}
		f.SetFloat(x)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", f.Type())
		}
		f.Set(reflect.ValueOf(strings.Split(value, ",")))
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}
