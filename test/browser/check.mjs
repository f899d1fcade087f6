// Checks eflambe's outputs in their real consumers, in headless Chromium:
//  - speedscope's own importer (the speedscope npm package) loads each
//    profile (folded, perf, speedscope JSON, pprof), over http and the way its
//    command opens a file (file://); its Export gives back what it
//    imported, whose per-process totals must match;
//  - the SVG flamegraph, opened on its own, inlined twice in an HTML page,
//    and inserted with innerHTML as a notebook does: click a frame and it
//    fills the width, reset, search a regular expression and the matched
//    share must match, hover shows the frame's details.
//  - a differential SVG: the named frames' colours and hover details.
// Usage: node check.mjs MANIFEST.json. The manifest:
//   {"profiles": [{"file": F, "totals": {"<0.85.0>": us, ...}, "tolerance": us}],
//    "svgs": [{"file": F, "search": REGEX, "share": PERCENT}],
//    "diffs": [{"file": F, "frames": [{"name": N, "under": PARENT, "colour": "red",
//                                     "shows": TEXT}]}]}
// Prints one line per check; exits 1 if any failed.
import {chromium} from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const manifest = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const speedscopeDir = path.join(here, 'node_modules/speedscope/dist/release');
let failures = 0;

function report(ok, what, detail) {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ': ' + detail : ''}`);
}

// Files by name, speedscope under /speedscope/, and HTML pages that embed an SVG.
const served = new Map();
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url.split('?')[0]);
  let body = served.get(url);
  if (body === undefined && url.startsWith('/speedscope/')) {
    const file = path.join(speedscopeDir, path.normalize(url.slice(12)));
    if (file.startsWith(speedscopeDir) && fs.existsSync(file)) body = fs.readFileSync(file);
  }
  if (body === undefined) { res.writeHead(404); res.end(); return; }
  const type = url.endsWith('.svg') ? 'image/svg+xml' : url.endsWith('.html') ? 'text/html' :
               url.endsWith('.js') ? 'text/javascript' : url.endsWith('.css') ? 'text/css' :
               'application/octet-stream';
  res.writeHead(200, {'Content-Type': type});
  res.end(body);
});
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

// Total time of an exported profile, in its own unit.
function exportedTotal(p) {
  if (p.type === 'sampled') return p.weights.reduce((a, b) => a + b, 0);
  let depth = 0, opened = 0, total = 0;
  for (const e of p.events) {
    if (e.type === 'O') { if (depth++ === 0) opened = e.at; }
    else if (--depth === 0) total += e.at - opened;
  }
  return total;
}

// speedscope's own command (bin/cli.mjs) opens a file this way: it writes
// a script calling speedscope.loadFileFromBase64(name, data) into a
// temporary file and opens its index.html from file:// with
// #localProfilePath= naming the script. Its importer then guesses the
// format from the name and the content, as it does over http.
function commandLineUrl(file) {
  const name = path.basename(file);
  const data = fs.readFileSync(file).toString('base64');
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'speedscope-'));
  const js = path.join(dir, 'profile.js');
  fs.writeFileSync(js, `speedscope.loadFileFromBase64(${JSON.stringify(name)}, ${JSON.stringify(data)})`);
  return `file://${path.join(speedscopeDir, 'index.html')}#localProfilePath=${js}`;
}

async function checkProfile(spec) {
  const name = '/' + path.basename(spec.file);
  served.set(name, fs.readFileSync(spec.file));
  await checkImport(spec, 'over http',
                    `${base}/speedscope/index.html#profileURL=${encodeURIComponent(base + name)}`);
  await checkImport(spec, 'from speedscope\'s command (file://)', commandLineUrl(spec.file));
}

async function checkImport({file, totals, tolerance = 1}, how, url) {
  const page = await browser.newPage({acceptDownloads: true});
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  await page.goto(url);
  try {
    await page.getByText('Export').waitFor({timeout: 20000});
    await page.waitForTimeout(300);
    const [download] = await Promise.all([page.waitForEvent('download', {timeout: 20000}),
                                          page.getByText('Export').click()]);
    const exported = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
    const got = {};
    for (const p of exported.profiles) {
      // perf profiles are named "<command> pid: N tid: N" and counted in seconds.
      const proc = p.name.split(' pid:')[0];
      // pprof's in nanoseconds.
      const scale = p.unit === 'seconds' ? 1e6 : p.unit === 'nanoseconds' ? 1e-3 : 1;
      got[proc] = Math.round((got[proc] || 0) + exportedTotal(p) * scale);
    }
    const want = Object.keys(totals).length === 1 && got[path.basename(file)] !== undefined
      ? {[path.basename(file)]: Object.values(totals)[0]} : totals;
    const bad = Object.keys(want).filter(k => Math.abs((got[k] || 0) - want[k]) > tolerance);
    report(bad.length === 0 && errors.length === 0, `speedscope imports ${path.basename(file)} ${how}`,
           bad.length || errors.length ? JSON.stringify({want, got, errors}) : `${exported.profiles.length} profile(s)`);
  } catch (e) {
    report(false, `speedscope imports ${path.basename(file)} ${how}`, e.message + ' ' + errors.join('; '));
  }
  await page.close();
}

// Drives one flamegraph inside `page`; `root` selects its <svg>.
async function driveSvg(page, root, label, {search, share, tolerance = 0.02}) {
  const svg = page.locator(root);
  const ready = await svg.evaluate(s => !!s.eflambe);
  report(ready, `${label}: script ran`);
  if (!ready) return;
  // A frame in the second row or above, narrower than half the width.
  const target = await svg.evaluate(s => {
    const g = s.eflambe.frames.find(f => +f.getAttribute('data-row') >= 2 && +f.getAttribute('data-w') < 0.5 &&
                                        +f.getAttribute('data-w') > 0.01);
    return g ? s.eflambe.frames.indexOf(g) : -1;
  });
  report(target >= 0, `${label}: has a frame to zoom into`);
  if (target < 0) return;
  const frame = svg.locator('g.f').nth(target);
  const before = +(await frame.locator('rect').getAttribute('width'));
  await frame.locator('rect').dispatchEvent('click');
  const after = +(await frame.locator('rect').getAttribute('width'));
  const resetShown = await svg.locator('.reset').evaluate(e => e.style.visibility === 'visible');
  report(after > 1170 && after > before && resetShown, `${label}: click zooms the frame to the full width`,
         `${before} -> ${after} px`);
  await frame.locator('rect').dispatchEvent('mouseover');
  const details = await svg.locator('.details').textContent();
  const name = await frame.getAttribute('data-name');
  report(details.includes(name), `${label}: hover shows the frame's details`, details);
  await svg.locator('.reset').dispatchEvent('click');
  const back = +(await frame.locator('rect').getAttribute('width'));
  report(Math.abs(back - before) < 0.01, `${label}: reset zoom`, `${back} px`);
  page.once('dialog', d => d.accept(search));
  await svg.locator('.search').dispatchEvent('click');
  const matched = await svg.locator('.matched').textContent();
  const got = parseFloat(matched.replace('Matched: ', ''));
  report(Math.abs(got - share) <= tolerance, `${label}: search /${search}/ shows the matched share`,
         `${matched}, expected ${share.toFixed(2)}%`);
  const magenta = await svg.locator('g.f rect[fill="rgb(230,0,230)"]').count();
  report(magenta > 0, `${label}: matches are highlighted`, `${magenta} frames`);
}

async function checkSvg(spec) {
  const text = fs.readFileSync(spec.file, 'utf8');
  const name = '/' + path.basename(spec.file);
  served.set(name, text);
  const inline = text.replace(/^<\?xml[^>]*>\s*/, '');
  served.set('/inline.html', `<!DOCTYPE html><html><body><h1>Two flamegraphs</h1>
    <div id="a">${inline}</div><div id="b">${inline}</div></body></html>`);
  served.set('/notebook.html', `<!DOCTYPE html><html><body><div id="cell"></div><script>
    fetch(${JSON.stringify(name)}).then(r => r.text()).then(t => {
      document.getElementById('cell').innerHTML = t.replace(/^<\\?xml[^>]*>\\s*/, '');
    });</script></body></html>`);
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));

  await page.goto(base + name);
  // The root frame is on the first screen, however deep the graph.
  await page.waitForFunction(() => !!document.documentElement.eflambe || !!document.querySelector('svg').eflambe);
  const rootSeen = await page.evaluate(() => {
    const r = document.querySelector('g.f[data-row="0"] rect').getBoundingClientRect();
    return r.top >= 0 && r.bottom <= window.innerHeight;
  });
  report(rootSeen, `${path.basename(spec.file)} opened on its own: the root is on the first screen`);
  // So are the controls, at the window's top and bottom, wherever it scrolls.
  for (const y of [null, 0]) {
    if (y !== null) {
      await page.evaluate(y => window.scrollTo(0, y), y);
      await page.waitForTimeout(50);
    }
    // (By the texts' baselines: the details line is empty until a hover,
    // and an empty text has no box.)
    const out = await page.evaluate(() => {
      const top = document.documentElement.getBoundingClientRect().top;
      return ['.search', '.reset', '.details'].map(sel => [sel, top + +document.querySelector(sel).getAttribute('y')])
        .filter(([, y]) => !(y >= 12 && y <= window.innerHeight))
        .map(([sel, y]) => `${sel} at ${Math.round(y)} of ${window.innerHeight}, scrolled ${window.scrollY}`);
    });
    report(out.length === 0, `${path.basename(spec.file)} opened on its own: Search, Reset Zoom and the details ` +
                             `are in the window ${y === null ? 'as it opens' : 'scrolled to the top'}`,
           out.join('; '));
  }
  await page.evaluate(() => window.scrollTo(0, document.documentElement.getBoundingClientRect().height));
  await driveSvg(page, 'svg', `${path.basename(spec.file)} opened on its own`, spec);

  await page.goto(base + '/inline.html');
  await driveSvg(page, '#b svg', 'inlined in an HTML page (second of two)', spec);
  const firstUntouched = await page.locator('#a svg .reset').evaluate(e => e.style.visibility !== 'visible') &&
                         await page.locator('#a svg .matched').textContent() === '';
  report(firstUntouched, 'inlined: the other flamegraph on the page is left alone');

  await page.goto(base + '/notebook.html');
  await page.locator('#cell svg').waitFor({timeout: 10000});
  await driveSvg(page, '#cell svg', 'inserted with innerHTML, as in a notebook cell', spec);
  report(errors.length === 0, 'no script errors', errors.join('; '));
  await page.close();
}

// A differential flamegraph: each named frame's fill is red (it grew),
// blue (it shrank) or white, and hovering it shows both times.
// spec: {file, frames: [{name, under, colour: 'red' | 'blue' | 'white', shows: TEXT}]}
async function checkDiff(spec) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  const name = '/' + path.basename(spec.file);
  served.set(name, fs.readFileSync(spec.file));
  await page.goto(base + name);
  await page.waitForFunction(() => !!document.querySelector('svg').eflambe);
  for (const f of spec.frames) {
    // The frame named so right above the one named `under`.
    const index = await page.evaluate(({name, under}) => {
      const all = [...document.querySelectorAll('g.f')];
      const num = (g, a) => +g.getAttribute('data-' + a);
      const parent = all.find(g => g.getAttribute('data-name') === under);
      return all.findIndex(g => g.getAttribute('data-name') === name && parent &&
                                num(g, 'row') === num(parent, 'row') + 1 &&
                                num(g, 'x') >= num(parent, 'x') - 1e-9 &&
                                num(g, 'x') < num(parent, 'x') + num(parent, 'w'));
    }, f);
    report(index >= 0, `diff ${path.basename(spec.file)}: ${f.name} over ${f.under} is drawn`);
    if (index < 0) continue;
    const g = page.locator('g.f').nth(index);
    const fill = await g.locator('rect').getAttribute('fill');
    const [r, gr, b] = (fill.match(/\d+/g) || []).map(Number);
    const colour = r === 255 && gr === 255 && b === 255 ? 'white' : r === 255 && b < 255 ? 'red' :
                   b === 255 && r < 255 ? 'blue' : fill;
    report(colour === f.colour, `diff ${path.basename(spec.file)}: ${f.name} over ${f.under} is ${f.colour}`, fill);
    await g.locator('rect').dispatchEvent('mouseover');
    const details = await page.locator('.details').textContent();
    report(details.includes(f.shows), `diff ${path.basename(spec.file)}: hovering ${f.name} shows ${f.shows}`,
           details);
  }
  report(errors.length === 0, `diff ${path.basename(spec.file)}: no script errors`, errors.join('; '));
  await page.close();
}

try {
  for (const p of manifest.profiles || []) await checkProfile(p);
  for (const s of manifest.svgs || []) await checkSvg(s);
  for (const d of manifest.diffs || []) await checkDiff(d);
} finally {
  await browser.close();
  server.close();
}
process.exit(failures ? 1 : 0);
