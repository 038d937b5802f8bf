package launcher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// component is a Dapr Component of a resources folder, as much of it as
// the launcher reads before starting sidecars.
type component struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Type     string `yaml:"type"`
		Metadata []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"metadata"`
	} `yaml:"spec"`
	Scopes []string `yaml:"scopes"`
}

// typ is the component's type in lower case ("state.sqlite").
func (c component) typ() string { return strings.ToLower(c.Spec.Type) }

// meta is the value of the last metadata item named one of names, ""
// when there is none.
func (c component) meta(names ...string) string {
	var v string
	for _, m := range c.Spec.Metadata {
		for _, n := range names {
			if m.Name == n {
				v = m.Value
			}
		}
	}
	return v
}

// readComponents reads the Components of the .yaml and .yml files in dir,
// in file order; a file may hold several documents, and documents of
// other kinds (a Resiliency, a Configuration) are passed over.
func readComponents(dir string) ([]component, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var comps []component
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var c component
			err := dec.Decode(&c)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if c.Kind == "Component" {
				comps = append(comps, c)
			}
		}
	}
	return comps, nil
}
