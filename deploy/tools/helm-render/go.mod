module cloister.dev/helm-render
