# gflops.gp: written by `attnbench report`; run with `gnuplot gflops.gp` in this folder
set title "Achieved GFLOP/s (the method's model FLOPs)" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "GFLOP/s" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set format x '2^{%L}'
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'gflops.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'gflops.svg' }
  plot 'gflops.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full_stream" noenhanced, \
       'gflops.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "full_stream dtype=bf16" noenhanced, \
       'gflops.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "ext:torch_sdpa" noenhanced, \
       'gflops.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "ext:torch_sdpa dtype=bf16" noenhanced
  set output
}
