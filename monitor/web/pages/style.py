"""The one stylesheet of the status pages, inlined in each (no asset to load)."""

from __future__ import annotations

# Colours meet WCAG AA contrast against their backgrounds; the state is also spelled out, and
# every history segment has a tooltip, so nothing is said by colour alone. Under 600 px the
# check table becomes one card per check.
CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:#f5f6f8;color:#1d2330}
a{color:#1f5bb5}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;flex-wrap:wrap;
 align-items:baseline;gap:4px 24px}
header h1{font-size:20px;margin:0}
header h1 a{color:#fff;text-decoration:none}
header p{margin:0;color:#c9cfdb;font-size:14px}
main{padding:16px 24px;max-width:1500px}
h2{font-size:17px;margin:20px 0 8px}
.summary{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 12px;padding:0;list-style:none}
.summary a,.summary span{display:block;background:#fff;border:1px solid #dde1e8;
 border-radius:6px;padding:6px 14px;color:inherit;text-decoration:none}
.summary b{font-size:21px;margin-right:6px}
.summary .bad b{color:#b3261e}
.summary .warn b{color:#8a5300}
.summary .on{outline:2px solid #1f5bb5}
form.filter{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:0 0 14px;background:#fff;
 border:1px solid #dde1e8;border-radius:6px;padding:10px 14px}
form.filter label{display:flex;flex-direction:column;font-size:12px;color:#5b6373;gap:2px}
form.filter input,form.filter select,form.filter button{font:inherit;padding:4px 8px;
 border:1px solid #b9c0cc;border-radius:4px;background:#fff;min-width:9em}
form.filter button{background:#1d2330;color:#fff;border-color:#1d2330;min-width:0}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #eceef2;vertical-align:middle}
thead th{background:#eef0f4;font-size:12px;text-transform:uppercase;letter-spacing:.03em;
 white-space:nowrap}
tbody th{font-weight:600;min-width:11em;max-width:24em}
tbody th a{color:inherit}
.note{margin:6px 2px;color:#5b6373;font-size:13px}
td{font-variant-numeric:tabular-nums;white-space:nowrap}
td.wrap,td[data-label=Alerts],td[data-label=Signals]{white-space:normal}
td.wrap{min-width:14em}
.state{display:inline-block;border-radius:10px;padding:1px 10px;font-weight:600;white-space:nowrap}
.state-up{background:#dcf3e3;color:#12602e}
.state-degraded{background:#fdf0d2;color:#6d4200}
.state-down{background:#fbe0de;color:#8c1d18}
.state-throttled{background:#e4e4fb;color:#35318f}
.state-unknown{background:#e8eaee;color:#3d4452}
.reason{color:#5b6373;font-size:13px;font-weight:400;margin-top:2px;max-width:32em;
 white-space:normal;word-break:break-word}
.provider{color:#5b6373;font-size:12px;font-weight:400;margin-left:6px}
.alert{display:inline-block;background:#b3261e;color:#fff;border-radius:4px;padding:0 6px;
 margin:0 4px 2px 0;font-size:13px;white-space:nowrap}
.alert.warning{background:#8a5300}
.muted{color:#5b6373}
.small{font-size:13px}
svg{vertical-align:middle}
svg.chart{width:100%;height:auto;max-width:760px;background:#fff;display:block}
svg text{font:11px system-ui,sans-serif;fill:#5b6373}
section.alerts{background:#fff4f3;border:1px solid #f0c4c0;border-radius:6px;padding:6px 16px;
 margin-bottom:14px}
section.alerts h2{font-size:16px;margin:4px 0}
section.alerts ul{margin:4px 0;padding-left:20px}
.panel{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 16px;
 margin-bottom:14px;overflow-x:auto}
.panel h2{margin:2px 0 8px}
.panel td{white-space:normal}
.panel td:first-child{white-space:nowrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.facts dt{color:#5b6373}
dl.facts dd{margin:0;word-break:break-word}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px;margin:4px 0;padding:0;
 list-style:none}
.pager{margin:8px 0;font-size:14px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:0 14px}
@media (max-width:600px){
 main{padding:10px}
 header{padding:10px}
 .summary a,.summary span{padding:4px 10px}
 .summary b{font-size:17px}
 .grid{grid-template-columns:1fr}
 table.checks,table.checks thead,table.checks tbody,table.checks tr,table.checks th,
 table.checks td{display:block}
 table.checks{border:0;background:none}
 table.checks thead{display:none}
 table.checks tr{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin-bottom:10px;
  padding:6px 10px}
 table.checks th,table.checks td{border:0;padding:3px 0;white-space:normal}
 table.checks td[data-label]::before{content:attr(data-label);display:inline-block;
  min-width:7.5em;color:#5b6373;font-size:12px;text-transform:uppercase}
}
"""
