// helm-render renders a Helm chart offline, for tests: text/template + sprig,
// plus the Helm functions the cloister chart uses (include, toYaml, required, fail).
//
// It is not Helm. It reads Chart.yaml and values.yaml, merges -f files and
// --set/--set-string/--set-file values over them, renders every template under
// templates/ (files starting with "_" only define named templates) and prints
// the manifests as one multi-document YAML stream, each preceded by
// "# Source: <chart>/templates/<file>". NOTES.txt is printed only with --notes.
// A template error (a `required` value missing, a bad expression) exits 1 with
// one line on stderr.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var valueFiles, sets, setStrings, setFiles multi
	chart := flag.String("chart", "", "chart directory")
	release := flag.String("release", "release-name", "release name")
	namespace := flag.String("namespace", "default", "namespace")
	notes := flag.Bool("notes", false, "print NOTES.txt instead of the manifests")
	flag.Var(&valueFiles, "f", "values file (repeatable)")
	flag.Var(&sets, "set", "KEY=VALUE (repeatable; dotted keys; true/false/integers typed)")
	flag.Var(&setStrings, "set-string", "KEY=VALUE (repeatable; always a string)")
	flag.Var(&setFiles, "set-file", "KEY=FILE (repeatable; the file's text)")
	flag.Parse()
	if *chart == "" {
		fail(errors.New("--chart DIR is required"))
	}
	out, err := render(*chart, *release, *namespace, *notes, valueFiles, sets, setStrings, setFiles)
	if err != nil {
		fail(err)
	}
	os.Stdout.WriteString(out)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "helm-render: error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(1)
}

func readYAML(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// merge copies src over dst recursively (maps merge, everything else replaces).
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func setPath(values map[string]interface{}, assignment string, typed bool, file bool) error {
	key, val, ok := strings.Cut(assignment, "=")
	if !ok || key == "" {
		return fmt.Errorf("--set %q: want KEY=VALUE", assignment)
	}
	var value interface{} = val
	if file {
		data, err := os.ReadFile(val)
		if err != nil {
			return err
		}
		value = string(data)
	} else if typed {
		if b, err := strconv.ParseBool(val); err == nil && (val == "true" || val == "false") {
			value = b
		} else if n, err := strconv.ParseInt(val, 10, 64); err == nil {
			value = n
		} else if val == "null" {
			value = nil
		}
	}
	parts := strings.Split(key, ".")
	m := values
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
	return nil
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func render(chartDir, release, namespace string, notes bool, valueFiles, sets, setStrings, setFiles []string) (string, error) {
	chartMeta, err := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	values, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		extra, err := readYAML(f)
		if err != nil {
			return "", err
		}
		merge(values, extra)
	}
	for _, s := range sets {
		if err := setPath(values, s, true, false); err != nil {
			return "", err
		}
	}
	for _, s := range setStrings {
		if err := setPath(values, s, false, false); err != nil {
			return "", err
		}
	}
	for _, s := range setFiles {
		if err := setPath(values, s, false, true); err != nil {
			return "", err
		}
	}
	// Helm exposes Chart.yaml keys capitalised (.Chart.Name, .Chart.AppVersion).
	chartObj := map[string]interface{}{}
	for k, v := range chartMeta {
		chartObj[strings.ToUpper(k[:1])+k[1:]] = v
	}
	top := map[string]interface{}{
		"Values":  values,
		"Chart":   chartObj,
		"Release": map[string]interface{}{"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
	}

	root := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	root.Funcs(funcs)

	tdir := filepath.Join(chartDir, "templates")
	var files []string
	err = filepath.WalkDir(tdir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	chartName := fmt.Sprint(chartMeta["name"])
	names := map[string]string{}
	for _, f := range files {
		rel, _ := filepath.Rel(chartDir, f)
		name := chartName + "/" + filepath.ToSlash(rel)
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if _, err := root.New(name).Parse(string(data)); err != nil {
			return "", err
		}
		names[f] = name
	}
	var out strings.Builder
	for _, f := range files {
		base := filepath.Base(f)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notes {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, names[f], top); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if notes {
			out.WriteString(text)
			continue
		}
		for _, doc := range strings.Split(text, "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", names[f], strings.Trim(doc, "\n"))
		}
	}
	return out.String(), nil
}

func stripComments(doc string) string {
	var keep []string
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
