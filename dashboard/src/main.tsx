import { render } from 'preact';

// A placeholder until the dashboard app lands (issue 16): proves the build and the serving.
render(<h1>tenantgate dashboard</h1>, document.getElementById('app')!);
