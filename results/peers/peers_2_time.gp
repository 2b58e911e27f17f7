# peers_2_time.gp: written by `attnbench report`; run with `gnuplot peers_2_time.gp` in this folder
set title "block_sparse: time per run, ours and the peers" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "wall time (median)" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 10
set format y '%.0s %cs'
set format x '2^{%L}'
set yrange [0.0014324426665552892:14.347093383000129]
x0 = 4096; y0 = 0.03944296800000302
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'peers_2_time.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'peers_2_time.svg' }
  plot 'peers_2_time.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "block_sparse" noenhanced, \
       'peers_2_time.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "ext:hf_bigbird" noenhanced, \
       y0 * (x / x0) ls 1 title '∝ n', y0 * (x / x0)**2 ls 2 title '∝ n^2'
  set output
}
