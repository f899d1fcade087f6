// Interactive flamegraph: click a frame to zoom into it, "Reset Zoom" (or
// Escape) to go back, "Search" for a regular expression (matches turn
// magenta and their share of the total is shown), details of the frame
// under the pointer at the bottom. Runs as the onbegin handler of a SMIL
// <set> element, with `svg` its root: that event fires whenever the
// element enters a document, so the code runs when the SVG is opened on
// its own, inlined in HTML, and inserted with innerHTML (as notebooks do),
// where neither <script> nor onload would run. Frame geometry comes from
// data attributes: data-x and data-w (fractions of the total), data-row.
(function (svg) {
  if (svg.getAttribute('data-ready')) return;
  svg.setAttribute('data-ready', '1');
  var width = +svg.getAttribute('data-width'), pad = 10, charWidth = 7;
  var q = function (sel) { return svg.querySelector(sel); };
  var frames = Array.prototype.slice.call(svg.querySelectorAll('g.f'));
  var details = q('.details'), reset = q('.reset'), search = q('.search'),
      matched = q('.matched');
  var view = {x: 0, w: 1}, zoomed = null, pattern = null;

  function num(g, name) { return +g.getAttribute('data-' + name); }
  function label(g, px) {
    var name = g.getAttribute('data-name'), fit = Math.floor((px - 3) / charWidth);
    if (fit >= name.length) return name;
    return fit < 3 ? '' : name.slice(0, fit - 2) + '..';
  }

  // Frames that overlap the view are scaled into it; ancestors of the
  // zoomed frame stay, full width and dimmed; the rest are hidden.
  function layout() {
    var span = width - 2 * pad;
    frames.forEach(function (g) {
      var x = num(g, 'x'), w = num(g, 'w'), rect = g.querySelector('rect'),
          text = g.querySelector('text'), left = Math.max(x, view.x),
          right = Math.min(x + w, view.x + view.w), px = (right - left) / view.w * span;
      var ancestor = zoomed && num(g, 'row') < num(zoomed, 'row') && left === view.x &&
                     right === view.x + view.w;
      if (right <= left || px < 0.1) { g.style.display = 'none'; return; }
      g.style.display = '';
      g.setAttribute('class', ancestor ? 'f parent' : 'f');
      var sx = pad + (left - view.x) / view.w * span;
      rect.setAttribute('x', sx.toFixed(2));
      rect.setAttribute('width', px.toFixed(2));
      text.setAttribute('x', (sx + 3).toFixed(2));
      text.textContent = label(g, px);
    });
    reset.style.visibility = zoomed ? 'visible' : 'hidden';
  }

  function zoom(g) {
    zoomed = g;
    view = g ? {x: num(g, 'x'), w: num(g, 'w')} : {x: 0, w: 1};
    layout();
  }

  function percent(share) { return (100 * share).toFixed(2) + '%'; }

  // The share of the total the matching frames cover, nested matches
  // counted once.
  function find(re) {
    pattern = re;
    var hits = [];
    frames.forEach(function (g) {
      var hit = re && re.test(g.getAttribute('data-name'));
      g.querySelector('rect').setAttribute('fill', hit ? 'rgb(230,0,230)' : g.getAttribute('data-fill'));
      if (hit) hits.push([num(g, 'x'), num(g, 'w')]);
    });
    hits.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });
    var covered = 0, end = -1;
    hits.forEach(function (h) {
      if (h[0] >= end) { covered += h[1]; end = h[0] + h[1]; }
      else if (h[0] + h[1] > end) { covered += h[0] + h[1] - end; end = h[0] + h[1]; }
    });
    matched.textContent = re ? 'Matched: ' + percent(covered) : '';
    search.textContent = re ? 'Clear Search' : 'Search';
    return covered;
  }

  svg.eflambe = {zoom: zoom, find: find, frames: frames};

  frames.forEach(function (g) {
    g.addEventListener('click', function () { zoom(g); });
    g.addEventListener('mouseover', function () {
      var diff = g.getAttribute('data-diff');
      details.textContent = 'Function: ' + g.getAttribute('data-name') + ' (' +
        g.getAttribute('data-us') + ' \u00b5s, ' + percent(num(g, 'w')) +
        (diff ? '; ' + diff : '') + ')';
    });
    g.addEventListener('mouseout', function () { details.textContent = ' '; });
  });
  reset.addEventListener('click', function () { zoom(null); });
  search.addEventListener('click', function () {
    if (pattern) { find(null); return; }
    var text = window.prompt('Search for (regular expression):', '');
    if (!text) return;
    try { find(new RegExp(text)); } catch (e) { matched.textContent = 'Bad expression: ' + e.message; }
  });
  (svg.ownerDocument || document).addEventListener('keydown', function (e) {
    if (e.key === 'Escape') zoom(null);
  });
  layout();
  // Opened on its own, a graph taller than the window would open on its
  // empty top: scroll to the root, at the bottom. The controls keep to the
  // window's edges meanwhile, over the frames on a band of background:
  // title, Reset Zoom and Search at the top, details at the bottom.
  // (Inlined in a page, the page decides.)
  var doc = svg.ownerDocument;
  if (doc && doc.documentElement === svg && window.scrollTo) {
    var ns = 'http://www.w3.org/2000/svg', height = +svg.getAttribute('height');
    var band = function () {
      var r = doc.createElementNS(ns, 'rect');
      r.setAttribute('width', '100%');
      r.setAttribute('height', '34');
      r.setAttribute('fill', '#f8f8f8');
      svg.appendChild(r);
      return r;
    };
    var topBand = band(), bottomBand = band();
    var top = [q('.title'), reset, search], bottom = [details, matched];
    top.concat(bottom).forEach(function (t) { svg.appendChild(t); });
    var pin = function () {
      var y = Math.max(0, Math.min(window.scrollY, height - window.innerHeight));
      var end = Math.min(height, y + window.innerHeight);
      topBand.setAttribute('y', y);
      top.forEach(function (t) { t.setAttribute('y', y + 24); });
      bottomBand.setAttribute('y', end - 30);
      bottom.forEach(function (t) { t.setAttribute('y', end - 10); });
    };
    window.addEventListener('scroll', pin);
    window.addEventListener('resize', pin);
    window.scrollTo(0, svg.getBoundingClientRect().height);
    pin();
    // (The window may have no size yet as this runs: again once drawn.)
    if (window.requestAnimationFrame) window.requestAnimationFrame(pin);
    window.addEventListener('load', pin);
  }
})(this.ownerSVGElement);
