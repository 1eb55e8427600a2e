// A small canvas viewer: one image or a stack of slices, window/level on the original values,
// zoom and pan, overlays (boxes, tile outlines, a tissue mask, the padding the model saw).
//
// A frame is either grey values ({width, height, values: Int16Array|Float32Array|Uint16Array})
// drawn through a linear window, or a picture ({width, height, rgba: Uint8ClampedArray}) whose
// channels can be shown one at a time. Coordinates given to overlays are image pixels.
"use strict";

const MIN_SCALE = 0.05, MAX_SCALE = 40;

export class Viewer {
  constructor(canvas, { onChange = () => {}, onHover = () => {}, onClick = null } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.onChange = onChange;
    this.onHover = onHover;
    this.onClick = onClick;
    this.buffer = document.createElement("canvas");
    this.bctx = this.buffer.getContext("2d", { willReadFrequently: true });
    this.frame = null;
    this.window = { center: 0, width: 1 };
    this.invert = false;
    this.channel = null;  // null = all; 0, 1, 2 = R, G, B alone (grey)
    this.scale = 1; this.ox = 0; this.oy = 0;
    this.fitted = true;
    this.tool = "wl";
    this.boxes = [];       // {x0, y0, x1, y1, label, color, visible}
    this.rects = [];       // {x, y, w, h, color, dashed, label}: tile outlines, highlights
    this.mask = null;      // {image: canvas, visible}
    this.padding = null;   // {left, top, size, visible}
    this.placement = { x: 0, y: 0 };  // where the frame sits in image coordinates (a padded model image)
    this.sampleAspect = 1; // row spacing / column spacing
    this._bind();
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
  }

  // -- content ---------------------------------------------------------------------------------------
  setFrame(frame, { keepView = true, placement = { x: 0, y: 0 } } = {}) {
    const sizeChanged = !this.frame || !frame || this.frame.width !== frame.width || this.frame.height !== frame.height;
    this.frame = frame;
    this.placement = placement;
    this._renderBuffer();
    if (!keepView || sizeChanged && this.fitted) this.fit(); else this.draw();
  }

  setWindow(center, width) {
    this.window = { center: Number(center), width: Math.max(1e-6, Number(width)) };
    this._renderBuffer();
    this.draw();
    this.onChange("window");
  }

  setChannel(channel) { this.channel = channel; this._renderBuffer(); this.draw(); }

  // -- geometry -------------------------------------------------------------------------------------
  extent() {
    // What "fit" fits: the padded square when the padding is shown, else the image.
    const f = this.frame;
    if (!f) return { x: 0, y: 0, w: 1, h: 1 };
    if (this.padding && this.padding.visible) {
      return { x: -this.padding.left, y: -this.padding.top, w: this.padding.size, h: this.padding.size };
    }
    const w = this.imageWidth || f.width, h = this.imageHeight || f.height;
    return { x: 0, y: 0, w, h };
  }

  fit() {
    const { x, y, w, h } = this.extent();
    const cw = this.canvas.clientWidth, ch = this.canvas.clientHeight;
    if (!cw || !ch) return;
    this.scale = Math.min(cw / w, ch / (h * this.sampleAspect));
    this.ox = (cw - w * this.scale) / 2 - x * this.scale;
    this.oy = (ch - h * this.scale * this.sampleAspect) / 2 - y * this.scale * this.sampleAspect;
    this.fitted = true;
    this.draw();
    this.onChange("view");
  }

  oneToOne() {
    const cx = this.canvas.clientWidth / 2, cy = this.canvas.clientHeight / 2;
    this.zoomAt(1 / this.scale, cx, cy);
  }

  zoomAt(factor, cx, cy) {
    const s = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.scale * factor));
    const k = s / this.scale;
    this.ox = cx - (cx - this.ox) * k;
    this.oy = cy - (cy - this.oy) * k;
    this.scale = s;
    this.fitted = false;
    this.draw();
    this.onChange("view");
  }

  pan(dx, dy) { this.ox += dx; this.oy += dy; this.fitted = false; this.draw(); this.onChange("view"); }

  toImage(cx, cy) { return { x: (cx - this.ox) / this.scale, y: (cy - this.oy) / (this.scale * this.sampleAspect) }; }
  toCanvas(x, y) { return { x: this.ox + x * this.scale, y: this.oy + y * this.scale * this.sampleAspect }; }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const box = this.canvas.parentElement.getBoundingClientRect();
    const w = Math.max(1, Math.floor(box.width)), h = Math.max(1, Math.floor(box.height));
    if (this.canvas.width === Math.round(w * dpr) && this.canvas.height === Math.round(h * dpr)) return;
    this.canvas.style.width = `${w}px`; this.canvas.style.height = `${h}px`;
    this.canvas.width = Math.round(w * dpr); this.canvas.height = Math.round(h * dpr);
    if (this.fitted) this.fit(); else this.draw();
  }

  // -- rendering ------------------------------------------------------------------------------------
  _renderBuffer() {
    const f = this.frame;
    if (!f) return;
    this.buffer.width = f.width; this.buffer.height = f.height;
    const out = this.bctx.createImageData(f.width, f.height);
    const px = out.data;
    const lo = this.window.center - this.window.width / 2, w = this.window.width;
    if (f.values) {
      const v = f.values, n = v.length, inv = this.invert;
      if (v instanceof Int16Array || v instanceof Uint16Array) {
        // One table per window: 65,536 entries are cheaper than a division per pixel.
        const off = v instanceof Int16Array ? 32768 : 0;
        const lut = new Uint8ClampedArray(65536);
        for (let i = 0; i < 65536; i++) {
          const g = Math.round(((i - off) - lo) / w * 255);
          lut[i] = inv ? 255 - Math.min(255, Math.max(0, g)) : g;
        }
        for (let i = 0, j = 0; i < n; i++, j += 4) {
          const g = lut[v[i] + off];
          px[j] = g; px[j + 1] = g; px[j + 2] = g; px[j + 3] = 255;
        }
      } else {
        for (let i = 0, j = 0; i < n; i++, j += 4) {
          let g = Math.round((v[i] - lo) / w * 255);
          g = g < 0 ? 0 : g > 255 ? 255 : g;
          if (inv) g = 255 - g;
          px[j] = g; px[j + 1] = g; px[j + 2] = g; px[j + 3] = 255;
        }
      }
    } else {
      const src = f.rgba, c = this.channel, windowed = f.windowed;
      for (let j = 0; j < src.length; j += 4) {
        if (c === null) {
          for (let k = 0; k < 3; k++) px[j + k] = windowed ? Math.round((src[j + k] - lo) / w * 255) : src[j + k];
        } else {
          const g = src[j + c];
          px[j] = g; px[j + 1] = g; px[j + 2] = g;
        }
        px[j + 3] = 255;
      }
    }
    this.bctx.putImageData(out, 0, 0);
  }

  draw() {
    const ctx = this.ctx, dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.frame) return;
    const s = this.scale, sy = this.scale * this.sampleAspect;
    ctx.setTransform(dpr * s, 0, 0, dpr * sy, dpr * this.ox, dpr * this.oy);
    if (this.padding && this.padding.visible) {
      // The padding is black to the model; hatched here so it reads as "added", not as image.
      const p = this.padding;
      ctx.fillStyle = "#000";
      ctx.fillRect(-p.left, -p.top, p.size, p.size);
      ctx.save();
      ctx.beginPath();
      ctx.rect(-p.left, -p.top, p.size, p.size);
      ctx.clip();
      ctx.strokeStyle = "rgba(240,180,41,0.35)";
      ctx.lineWidth = 1 / s;
      const step = 12 / s;
      for (let d = -p.size; d < 2 * p.size; d += step) {
        ctx.beginPath(); ctx.moveTo(-p.left + d, -p.top); ctx.lineTo(-p.left + d - p.size, -p.top + p.size); ctx.stroke();
      }
      ctx.restore();
    }
    // Nearest neighbour when magnified, so each original pixel stays one visible square.
    ctx.imageSmoothingEnabled = s < 1;
    ctx.drawImage(this.buffer, this.placement.x, this.placement.y);
    if (this.mask && this.mask.visible) {
      ctx.globalAlpha = 0.35;
      ctx.drawImage(this.mask.image, 0, 0, this.imageWidth || this.frame.width, this.imageHeight || this.frame.height);
      ctx.globalAlpha = 1;
    }
    // Lines in screen pixels, whatever the zoom.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (this.padding && this.padding.visible) {
      const p = this.padding, a = this.toCanvas(-p.left, -p.top), b = this.toCanvas(p.size - p.left, p.size - p.top);
      ctx.strokeStyle = "#f0b429"; ctx.setLineDash([6, 4]); ctx.lineWidth = 1;
      ctx.strokeRect(a.x + 0.5, a.y + 0.5, b.x - a.x - 1, b.y - a.y - 1);
      ctx.setLineDash([]);
    }
    ctx.font = "11px system-ui, sans-serif";
    for (const r of this.rects) {
      const a = this.toCanvas(r.x, r.y), b = this.toCanvas(r.x + r.w, r.y + r.h);
      ctx.strokeStyle = r.color || "#4fb3d9"; ctx.lineWidth = r.lineWidth || 1;
      ctx.setLineDash(r.dashed ? [4, 3] : []);
      ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
      if (r.fill) { ctx.fillStyle = r.fill; ctx.fillRect(a.x, a.y, b.x - a.x, b.y - a.y); }
      if (r.label && b.x - a.x > 18) { ctx.fillStyle = r.color; ctx.fillText(r.label, a.x + 3, a.y + 12); }
    }
    ctx.setLineDash([]);
    ctx.font = "12px system-ui, sans-serif";
    for (const b of this.boxes) {
      if (!b.visible) continue;
      const a = this.toCanvas(b.x0, b.y0), c = this.toCanvas(b.x1, b.y1);
      ctx.strokeStyle = b.color; ctx.lineWidth = 2;
      ctx.strokeRect(a.x, a.y, c.x - a.x, c.y - a.y);
      const tw = ctx.measureText(b.label).width + 6;
      ctx.fillStyle = b.color;
      ctx.fillRect(a.x, a.y - 16, tw, 16);
      ctx.fillStyle = "#000";
      ctx.fillText(b.label, a.x + 3, a.y - 4);
    }
  }

  // -- input ----------------------------------------------------------------------------------------
  _bind() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("pointerdown", (e) => {
      c.focus();
      const mode = e.button === 2 ? "zoom" : e.button === 1 || e.shiftKey ? "pan" : this.tool;
      drag = { x: e.offsetX, y: e.offsetY, x0: e.offsetX, y0: e.offsetY, mode, moved: false };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener("pointermove", (e) => {
      this._hover(e.offsetX, e.offsetY);
      if (!drag) return;
      const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
      if (Math.abs(e.offsetX - drag.x0) + Math.abs(e.offsetY - drag.y0) > 3) drag.moved = true;
      drag.x = e.offsetX; drag.y = e.offsetY;
      if (drag.mode === "pan" || (drag.mode === "wl" && !this.windowable())) this.pan(dx, dy);
      else if (drag.mode === "zoom") this.zoomAt(Math.exp(-dy / 150), drag.x0, drag.y0);
      else if (drag.mode === "wl") {
        // Sensitivity follows the value range, so a drag across the viewer spans about the whole range.
        const k = Math.max(this.valueSpan || 256, 1) / 400;
        this.setWindow(this.window.center - dy * k, Math.max(1, this.window.width + dx * k));
      }
    });
    const end = (e) => {
      if (drag && !drag.moved && this.onClick) {
        const p = this.toImage(e.offsetX, e.offsetY);
        this.onClick(p);
      }
      drag = null;
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", () => { drag = null; });
    c.addEventListener("pointerleave", () => this.onHover(null));
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      if (e.ctrlKey || !this.onScroll) this.zoomAt(Math.exp(-e.deltaY / 300), e.offsetX, e.offsetY);
      else this.onScroll(Math.sign(e.deltaY));
    }, { passive: false });
    c.addEventListener("keydown", (e) => {
      const step = 40;
      if (e.shiftKey && e.key.startsWith("Arrow")) {
        const d = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[e.key];
        this.pan(d[0], d[1]);
      } else if (e.key === "+" || e.key === "=") this.zoomAt(1.25, c.clientWidth / 2, c.clientHeight / 2);
      else if (e.key === "-") this.zoomAt(0.8, c.clientWidth / 2, c.clientHeight / 2);
      else if (e.key === "0") this.fit();
      else if (this.onScroll && (e.key === "ArrowDown" || e.key === "ArrowRight")) this.onScroll(1);
      else if (this.onScroll && (e.key === "ArrowUp" || e.key === "ArrowLeft")) this.onScroll(-1);
      else if (this.onScroll && e.key === "PageDown") this.onScroll(10);
      else if (this.onScroll && e.key === "PageUp") this.onScroll(-10);
      else if (this.onScroll && e.key === "Home") this.onScroll(-1e9);
      else if (this.onScroll && e.key === "End") this.onScroll(1e9);
      else return;
      e.preventDefault();
    });
  }

  windowable() { return !!(this.frame && (this.frame.values || this.frame.windowed)); }

  _hover(cx, cy) {
    if (!this.frame) return;
    const p = this.toImage(cx, cy);
    const x = Math.floor(p.x), y = Math.floor(p.y);
    const fx = x - this.placement.x, fy = y - this.placement.y;
    let value = null;
    if (fx >= 0 && fy >= 0 && fx < this.frame.width && fy < this.frame.height) {
      const i = fy * this.frame.width + fx;
      value = this.frame.values ? this.frame.values[i] : Array.from(this.frame.rgba.slice(i * 4, i * 4 + 3));
    }
    this.onHover({ x: p.x, y: p.y, value });
  }
}

// Grey values from a binary slice: little-endian int16 or float32.
export function valuesFrom(buffer, dtype, width, height) {
  const view = dtype === "int16" ? new Int16Array(buffer) : new Float32Array(buffer);
  if (view.length !== width * height) throw new Error(`slice holds ${view.length} values, expected ${width * height}`);
  return { width, height, values: view };
}

// RGBA pixels of a decoded picture (ImageBitmap).
export function rgbaFrom(bitmap) {
  const c = document.createElement("canvas");
  c.width = bitmap.width; c.height = bitmap.height;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return { width: c.width, height: c.height, rgba: ctx.getImageData(0, 0, c.width, c.height).data };
}
