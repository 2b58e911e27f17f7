# scores_per_token.gp: written by `attnbench report`; run with `gnuplot scores_per_token.gp` in this folder
set title "Query-key scores per token (counted by the kernels)" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "scores per token" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 2
set format y '%g'
set format x '2^{%L}'
set yrange [4096:9216]
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'scores_per_token.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'scores_per_token.svg' }
  plot 'scores_per_token.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "reversible (lsh) L=12" noenhanced
  set output
}
