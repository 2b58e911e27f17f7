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
  plot 'gflops.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full" noenhanced, \
       'gflops.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "full heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "full heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "full_stream" noenhanced, \
       'gflops.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "full_stream heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "full_stream heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 6 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 7 title "full_stream heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 7 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 8 title "full_stream heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 8 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 9 title "block_sparse" noenhanced, \
       'gflops.dat' index 9 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 10 title "block_sparse heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 10 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 11 title "block_sparse heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 11 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 12 title "block_sparse heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 12 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 13 title "block_sparse heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 13 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 14 title "etc" noenhanced, \
       'gflops.dat' index 14 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 15 title "etc heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 15 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 16 title "etc heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 16 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 17 title "etc heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 17 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 18 title "etc heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 18 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 19 title "lsh" noenhanced, \
       'gflops.dat' index 19 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 20 title "lsh heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 20 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 21 title "lsh heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 21 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 22 title "lsh heads=4 accuracy=0 backward=1" noenhanced, \
       'gflops.dat' index 22 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 23 title "lsh heads=4 accuracy=0" noenhanced, \
       'gflops.dat' index 23 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 24 title "ring" noenhanced, \
       'gflops.dat' index 24 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 25 title "reversible (lsh) L=4" noenhanced, \
       'gflops.dat' index 25 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 26 title "reversible (lsh) L=12" noenhanced, \
       'gflops.dat' index 26 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 27 title "reversible (lsh) L=4" noenhanced, \
       'gflops.dat' index 27 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 28 title "reversible (lsh) L=12" noenhanced
  set output
}
